"""The command topic replayed from offset 0 after everything was applied: nothing changes."""
from dataclasses import replace

import pytest
from sqlalchemy import select

from consumer.embedded import wait_until
from schemas import tables as t
from tests.faults import ledger

pytestmark = [pytest.mark.integration, pytest.mark.faults]

WRITTEN = (t.schedule_entries, t.schedule_entry_assignees, t.schedule_conflicts, t.audit_logs, t.command_inbox, t.event_outbox)


def snapshot(owner, tenants):
    ids = [x.tenant for x in tenants]
    with owner.connect() as conn:
        return {table.name: sorted(map(tuple, conn.execute(select(table).where(table.c.tenant.in_(ids))))) for table in WRITTEN}


def test_replay_from_zero_answers_every_command_as_duplicate(observer, owner, tenants, spawn, fault_settings):
    stream = ledger.build(tenants, units_per_tenant=20)
    observer.send_many(stream.commands, stream.partition_of)
    process = spawn("consumer")
    wait_until(lambda: ledger.applied(owner, stream) == len(stream.commands), 120, "the stream applied")
    observer.quiesce(60)
    assert process.terminate() == 0
    before = snapshot(owner, tenants)

    # A new group starts from offset 0: every command is delivered again.
    spawn("replayer", replace(fault_settings, consumer_group=f"{fault_settings.consumer_group}.replay"))
    wait_until(lambda: all(len(observer.replies(c)) >= 2 for c in stream.command_ids), 120, "a second reply to every command")
    observer.quiesce(60)

    for command_id in stream.command_ids:
        first, again = observer.replies(command_id)
        assert again["duplicate"] is True
        assert {k: v for k, v in again.items() if k not in ("duplicate", "_headers", "_raw")} == {
            k: v for k, v in first.items() if k not in ("duplicate", "_headers", "_raw")
        }
    assert snapshot(owner, tenants) == before, "a replay writes nothing"
    ledger.check(owner, stream, observer.seen.events, observer.seen.replies)
