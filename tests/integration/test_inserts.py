"""Rows written together as one unnested INSERT, or a single row as plain values: every value
round-trips, in the order given; several tables' rows go in one statement, written or failed as one."""
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import Engine, bindparam, delete, text
from sqlalchemy.exc import IntegrityError

from consumer import pipelining
from consumer.database import set_tenant
from handlers.statements import Write, insert_rows, insert_together, writes_sent
from schemas.tables import audit_logs, command_inbox, event_outbox

pytestmark = pytest.mark.integration


def _outbox_row(tenant: str, n: int, event: bool) -> dict:
    command_id = str(uuid.uuid4())
    return {
        "tenant": tenant,
        "kind": "event" if event else "reply",
        "topic": f"topic-{n}",
        "message_key": None if n == 1 else f"key-{n}".encode(),
        "message_value": bytes([0, n, 255]),
        # A JSON value that is itself a list: one element of the array, not a dimension of it.
        "headers": [["event_id", f"e{n}"], ["content-type", "application/vnd.apache.avro"]],
        "command_id": command_id,
        "event_id": str(uuid.uuid4()) if event else None,
        "event_type": "APPOINTMENT_CANCELED" if event else None,
        "appointment_id": f"appt-{n}" if event else None,
    }


@pytest.mark.parametrize("count", [1, 2, 7])
def test_rows_come_back_as_given_numbered_in_their_order(owner: Engine, tenant, count) -> None:
    rows = [_outbox_row(tenant.tenant, n, event=n % 2 == 0) for n in range(count)]
    pipelining.install(owner)
    with owner.connect() as conn:
        pipelining.enter(conn)
        try:
            with pipelining.transaction(conn):
                set_tenant(conn, tenant.tenant)
                insert_rows(conn, event_outbox, rows)
        finally:
            pipelining.leave(conn)
        stored = conn.execute(
            text(
                "select kind, topic, message_key, message_value, headers, command_id::text, event_id::text, event_type, appointment_id"
                " from event_outbox where tenant = :t order by id"
            ),
            {"t": tenant.tenant},
        ).all()
        conn.rollback()
    columns = ("kind", "topic", "message_key", "message_value", "headers", "command_id", "event_id", "event_type", "appointment_id")
    assert [dict(zip(columns, row)) for row in stored] == [{k: r[k] for k in columns} for r in rows]


def test_json_values_carry_instants_as_the_service_writes_them(owner: Engine, tenant) -> None:
    # A column keeps the instant whole; inside a JSON value it is written to the millisecond, as every
    # reply and event writes it.
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
    row = {
        "tenant": tenant.tenant, "audit_id": str(uuid.uuid4()), "user_id": None, "operation": "update",
        "table_name": "schedule_entries", "record_id": "r1", "changed_data": {"scheduled_start": at}, "details": None, "timestamp": at,
    }  # fmt: skip
    with owner.begin() as conn:
        insert_rows(conn, audit_logs, [row])
        stored = conn.execute(text("select changed_data, details, timestamp from audit_logs where audit_id = :a"), {"a": row["audit_id"]}).one()
    assert stored.changed_data == {"scheduled_start": "2026-03-04T05:06:07.890Z"}
    assert stored.details is None and stored.timestamp == at


def _inbox_row(tenant: str, command_id: str) -> dict:
    return {
        "tenant": tenant, "command_id": command_id, "action": "scheduling.cancel", "body_hash": "h", "status": "OK",
        "result": {"status": "OK"}, "source_topic": "commands", "source_partition": 0, "source_offset": 7,
        "processed_at": datetime(2026, 3, 4, tzinfo=timezone.utc), "duplicate_reply": b"\x00reply",
    }  # fmt: skip


def _audit_row(tenant: str, record_id: str) -> dict:
    return {
        "tenant": tenant, "audit_id": str(uuid.uuid4()), "user_id": "u1", "operation": "workflow_action:scheduling.cancel",
        "table_name": "schedule_entries", "record_id": record_id, "changed_data": {"status": "cancelled"}, "details": {"n": 1},
        "timestamp": datetime(2026, 3, 4, tzinfo=timezone.utc),
    }  # fmt: skip


def _written(conn, tenant: str) -> tuple[list, list, list]:
    def ids(sql: str) -> list:
        return conn.execute(text(sql), {"t": tenant}).scalars().all()

    return (
        ids("select command_id::text from command_inbox where tenant = :t order by source_offset"),
        ids("select command_id::text from event_outbox where tenant = :t order by id"),
        ids("select record_id from audit_logs where tenant = :t order by record_id"),
    )


def _together(owner: Engine, tenant: str, parts: list, also: Write | None = None) -> tuple[int, tuple[list, list, list]]:
    """`insert_together` in a pipelined transaction: the statements it sent, and what it wrote."""
    pipelining.install(owner)
    with owner.connect() as conn:
        pipelining.enter(conn)
        try:
            with pipelining.transaction(conn):
                set_tenant(conn, tenant)
                before = writes_sent(conn)
                insert_together(conn, parts, also)
                statements = writes_sent(conn) - before
        finally:
            pipelining.leave(conn)
        written = _written(conn, tenant)
        conn.rollback()
    return statements, written


@pytest.mark.parametrize("outbox_count, audit_count", [(1, 1), (3, 2), (2, 0)])
def test_rows_of_three_tables_go_in_one_statement(owner: Engine, tenant, outbox_count, audit_count) -> None:
    t = tenant.tenant
    inbox_rows = [_inbox_row(t, str(uuid.uuid4()))]
    outbox_rows = [_outbox_row(t, n, event=n > 0) for n in range(outbox_count)]
    audit_rows = [_audit_row(t, f"r{n}") for n in range(audit_count)]
    statements, written = _together(owner, t, [(command_inbox, inbox_rows), (event_outbox, outbox_rows), (audit_logs, audit_rows)])
    with owner.connect() as conn:
        stored_inbox = conn.execute(text("select result, duplicate_reply from command_inbox where tenant = :t"), {"t": t}).one()
    assert statements == 1
    assert written == ([inbox_rows[0]["command_id"]], [r["command_id"] for r in outbox_rows], [r["record_id"] for r in audit_rows])
    assert stored_inbox == ({"status": "OK"}, b"\x00reply")


def test_a_part_that_fails_writes_none_of_the_others(owner: Engine, tenant) -> None:
    t = tenant.tenant
    command_id = str(uuid.uuid4())
    with owner.begin() as conn:
        insert_rows(conn, command_inbox, [_inbox_row(t, command_id)])
    with pytest.raises(IntegrityError) as raised:
        with owner.begin() as conn:
            insert_together(conn, [(command_inbox, [_inbox_row(t, command_id)]), (event_outbox, [_outbox_row(t, 1, event=False)]),
                                   (audit_logs, [_audit_row(t, "r1")])])  # fmt: skip
    assert raised.value.orig.diag.constraint_name == "command_inbox_pkey"
    with owner.connect() as conn:
        assert _written(conn, t) == ([command_id], [], [])


@pytest.mark.parametrize("with_rows", [True, False])
def test_another_write_of_the_transaction_goes_in_the_same_statement_or_alone(owner: Engine, tenant, with_rows) -> None:
    t = tenant.tenant
    with owner.begin() as conn:
        insert_rows(conn, audit_logs, [_audit_row(t, "old")])
    gone = Write("old_rows", delete(audit_logs).where(audit_logs.c.record_id == bindparam("old_record")), {"old_record": "old"})
    rows = [(command_inbox, [_inbox_row(t, str(uuid.uuid4()))]), (audit_logs, [_audit_row(t, "new")])] if with_rows else []
    statements, (inbox, _, audit) = _together(owner, t, rows, gone)
    assert statements == 1
    assert (len(inbox), audit) == ((1, ["new"]) if with_rows else (0, []))
