"""Hot statements: what is checked before anything reaches the database."""
import pytest

from handlers.statements import insert_rows
from schemas.tables import audit_logs


def test_rows_written_in_one_call_must_give_the_same_columns():
    rows = [{"tenant": "t", "operation": "a"}, {"tenant": "t", "table_name": "b"}]
    with pytest.raises(ValueError, match="rows for audit_logs give different columns"):
        insert_rows(None, audit_logs, rows)  # type: ignore[arg-type]


def test_rows_written_in_one_call_must_name_one_tenant():
    rows = [{"tenant": "t1", "operation": "a"}, {"tenant": "t2", "operation": "b"}]
    with pytest.raises(ValueError, match="rows for audit_logs name more than one tenant"):
        insert_rows(None, audit_logs, rows)  # type: ignore[arg-type]
