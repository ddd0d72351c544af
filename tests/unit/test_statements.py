"""Hot statements: what is checked before anything reaches the database."""
import pytest
from sqlalchemy import Integer, bindparam, delete, select, text, union_all
from sqlalchemy.dialects.postgresql.psycopg import dialect

from handlers.statements import Write, _may_write, insert_rows, insert_together, writes
from schemas.tables import audit_logs, command_inbox, schedule_entries


def test_rows_written_in_one_call_must_give_the_same_columns():
    rows = [{"tenant": "t", "operation": "a"}, {"tenant": "t", "table_name": "b"}]
    with pytest.raises(ValueError, match="rows for audit_logs give different columns"):
        insert_rows(None, audit_logs, rows)  # type: ignore[arg-type]


def test_rows_written_in_one_call_must_name_one_tenant():
    rows = [{"tenant": "t1", "operation": "a"}, {"tenant": "t2", "operation": "b"}]
    with pytest.raises(ValueError, match="rows for audit_logs name more than one tenant"):
        insert_rows(None, audit_logs, rows)  # type: ignore[arg-type]


def test_rows_of_several_tables_written_together_must_name_one_tenant():
    parts = [(command_inbox, [{"tenant": "t1", "action": "a"}]), (audit_logs, [{"tenant": "t2", "operation": "b"}])]
    with pytest.raises(ValueError, match="rows for audit_logs name more than one tenant"):
        insert_together(None, parts)  # type: ignore[arg-type]


def test_rows_of_one_table_come_in_one_part():
    parts = [(audit_logs, [{"tenant": "t", "operation": "a"}]), (audit_logs, [{"tenant": "t", "operation": "b"}])]
    with pytest.raises(ValueError, match="rows for one table come in more than one part"):
        insert_together(None, parts)  # type: ignore[arg-type]


def test_a_write_sent_with_the_rows_names_its_parameters_apart():
    also = Write("gone", delete(audit_logs).where(audit_logs.c.record_id == bindparam("tenant")), {"tenant": "t"})
    with pytest.raises(ValueError, match="gone names a parameter of the inserts"):
        insert_together(None, [(audit_logs, [{"tenant": "t", "operation": "a"}])], also)  # type: ignore[arg-type]


def test_nothing_to_write_sends_nothing():
    insert_together(None, [(command_inbox, []), (audit_logs, [])])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sql, changes",
    [
        ("SELECT schedule_entries.entry_id FROM schedule_entries", False),
        ("\n  select 1 from schedule_entries for update", False),
        ("INSERT INTO audit_logs (tenant) VALUES (%(tenant)s)", True),
        ("UPDATE schedule_entries SET notes = %(notes)s", True),
        ("DELETE FROM schedule_entry_assignees", True),
        ("WITH batch AS (SELECT 1) INSERT INTO delivery_attempts SELECT * FROM batch", True),
        ("WITH q AS (SELECT 1) SELECT * FROM q", True),  # a WITH is not looked into
    ],
)
def test_only_a_plain_select_counts_as_a_read(sql, changes):
    assert writes(sql) is changes


_locked = select(schedule_entries.c.entry_id).with_for_update().cte("locked")
_inserted = audit_logs.insert().returning(audit_logs.c.audit_id).cte("inserted")


@pytest.mark.parametrize(
    "statement, changes",
    [
        (select(_locked.c.entry_id), False),
        (union_all(select(_locked.c.entry_id), select(schedule_entries.c.entry_id)), False),
        (select(_inserted.c.audit_id), True),
        (audit_logs.insert(), True),
        (text("with started as (insert into audit_logs default values) select 1 as n").columns(n=Integer), True),
        (text("select 1 as n").columns(n=Integer), False),
    ],
)
def test_a_with_of_selects_alone_counts_as_a_read(statement, changes):
    compiled = statement.compile(dialect=dialect())
    assert _may_write(statement, compiled, compiled.string) is changes
