"""Rows written together as one unnested INSERT, or a single row as plain values: every value
round-trips, in the order given."""
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import Engine, text

from consumer import outbox, pipelining
from consumer.database import set_tenant
from handlers.statements import insert_rows
from schemas.tables import audit_logs

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
                outbox.add(conn, rows)
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
