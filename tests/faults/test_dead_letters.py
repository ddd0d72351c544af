"""A poison message and a message that keeps killing the consumer both end in the
dead-letter topic, and the commands after them are applied."""
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from consumer.embedded import wait_until
from handlers.timeutil import iso
from schemas import tables as t
from tests.faults import ledger

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DLQ_HEADERS = {
    "dlq.original.topic", "dlq.original.partition", "dlq.original.offset", "dlq.original.timestamp",
    "dlq.error.class", "dlq.error.message", "dlq.failed.at", "dlq.attempts",
}  # fmt: skip


def started(owner, group: str, partition: int, offset: int) -> int:
    """Starts recorded for the message: its row's count, or one while only its batch's claim holds it."""
    with owner.connect() as conn:
        n = conn.execute(
            text(
                'select coalesce((select attempts from delivery_attempts where consumer_group = :g and partition = :p and "offset" = :o),'
                " (select 1 from delivery_claims c, unnest(c.partitions, c.offsets) x (p, o) where c.consumer_group = :g and x.p = :p and x.o = :o limit 1))"
            ),
            {"g": group, "p": partition, "o": offset},
        ).scalar()
    return n or 0


def blocked_on_a_lock(owner) -> bool:
    with owner.connect() as conn:
        return conn.execute(text("select exists (select 1 from pg_stat_activity where wait_event_type = 'Lock')")).scalar()


def test_poison_and_crash_loop_are_dead_lettered_and_the_rest_applied(observer, owner, tenants, spawn, fault_settings):
    stream = ledger.build(tenants, units_per_tenant=15)
    victim = tenants[0]
    partition = stream.partition_of({"tenant_id": victim.tenant})
    first, rest = stream.commands[: len(stream.commands) // 2], stream.commands[len(stream.commands) // 2 :]
    observer.send_many(first, stream.partition_of)

    # A command whose handler never returns while the test holds its row: each
    # consumer that takes it up is stuck with it in flight, and is killed there.
    killer = {
        "command_id": str(uuid.uuid4()), "tenant_id": victim.tenant, "action": "scheduling.reschedule",
        "actor": {"user_id": victim.id("dispatcher")},
        "input": {"entry_id": victim.id("visit"), "window": {"start": iso(victim.base + timedelta(days=1, hours=11)), "end": iso(victim.base + timedelta(days=1, hours=12))}},
    }  # fmt: skip
    offsets = []
    for value in (b"\x00\x01not a schema registry frame", json.dumps(killer).encode()):
        observer.producer.produce(
            fault_settings.commands_topic, value=value, key=victim.tenant.encode(), partition=partition,
            on_delivery=lambda err, msg: offsets.append(msg.offset()),
        )  # fmt: skip
    assert observer.producer.flush(10) == 0
    killer_offset = offsets[1]
    observer.send_many(rest, stream.partition_of)

    lock = owner.connect()
    lock.begin()
    lock.execute(select(t.schedule_entries.c.entry_id).where(t.schedule_entries.c.entry_id == victim.id("visit")).with_for_update())
    try:
        limit = fault_settings.poison_after_crashes
        for n in range(1, limit + 1):
            process = spawn(f"consumer-{n}")
            wait_until(lambda: started(owner, fault_settings.consumer_group, partition, killer_offset) == n and blocked_on_a_lock(owner), 60, f"start {n} of the killer")
            process.kill()
        process = spawn("consumer-last")
        dead = observer.dead_letter(lambda d: d["headers"].get("dlq.error.class") == "CrashLoop", timeout=60)
        wait_until(lambda: ledger.applied(owner, stream) == len(stream.commands), 120, "the commands after them applied")
    finally:
        lock.rollback()
        lock.close()
    observer.quiesce(60)

    poison = observer.dead_letter(lambda d: d["headers"].get("dlq.original.offset") == str(offsets[0]))
    assert DLQ_HEADERS <= set(poison["headers"]) and DLQ_HEADERS <= set(dead["headers"])
    assert poison["headers"]["dlq.error.class"] == "UnknownSchemaId" or poison["headers"]["dlq.error.class"].startswith("SchemaRegistry")
    assert dead["value"] == json.dumps(killer).encode() and dead["key"] == victim.tenant.encode()
    assert dead["headers"]["dlq.original.offset"] == str(killer_offset)
    assert dead["headers"]["dlq.attempts"] == str(limit + 1)
    assert f"stopped {limit} times" in dead["headers"]["dlq.error.message"]
    reply = observer.reply(killer["command_id"])
    assert reply["status"] == "ERROR" and reply["error"]["code"] == "INTERNAL_ERROR"
    assert reply["error"]["details"] == {"error_class": "CrashLoop", "dead_lettered": True}

    ledger.check(owner, stream, observer.seen.events, observer.seen.replies)
    with owner.connect() as conn:
        assert conn.execute(select(t.command_inbox.c.command_id).where(t.command_inbox.c.command_id == killer["command_id"])).first() is None
    assert ledger.in_flight(owner, fault_settings.consumer_group) == 0
    assert process.terminate() == 0
