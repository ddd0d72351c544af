"""Replaying the command topic against a restored database rebuilds the same rows and event ids."""
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from consumer.codecs import Codec, Family
from consumer.demo import seed
from consumer.partition_workers import PartitionWorkers
from handlers.timeutil import iso, to_millis
from schemas import tables as t
from tests.conftest import BASE
from tests.harness import Stack, topic_settings

pytestmark = pytest.mark.integration

# Tables a command can write, keyed for a stable comparison.
WRITTEN = (t.schedule_entries, t.schedule_entry_assignees, t.schedule_conflicts, t.audit_logs)


def snapshot(owner, tenant):
    """Rows and event ids; created_at/updated_at are left out because rows the
    commands never touched carry the time the restore seeded them."""
    with owner.connect() as conn:
        rows = {
            table.name: sorted(
                tuple(r) for r in conn.execute(select(*(c for c in table.c if c.name not in ("created_at", "updated_at"))).where(table.c.tenant == tenant.tenant))
            )
            for table in WRITTEN
        }
        events = conn.execute(
            select(t.event_outbox.c.event_id, t.event_outbox.c.event_type, t.event_outbox.c.appointment_id)
            .where(t.event_outbox.c.tenant == tenant.tenant, t.event_outbox.c.kind == "event")
            .order_by(t.event_outbox.c.id)
        ).all()
    return rows, [tuple(e) for e in events]


def restore(owner, tenant):
    """Put the tenant back as seeded: what a restore from a backup taken before the commands gives."""
    with owner.begin() as conn:
        for table in (t.event_outbox, t.command_inbox, t.audit_logs, t.schedule_conflicts, t.schedule_entry_assignees, t.schedule_entries,
                      t.workflow_runs, t.workflow_definition_versions, t.workflow_definitions, t.role_permissions, t.user_roles,
                      t.permissions, t.roles, t.tickets, t.users, t.tenants):  # fmt: skip
            conn.execute(delete(table).where(table.c.tenant == tenant.tenant))
        seed(conn, tenant.tenant, BASE, name="Test MSP")


def commands(tenant):
    """A mixed stream: recurring edits, conflicts, reassignments, status changes."""
    issued = BASE - timedelta(days=1)
    standup = tenant.id("standup")
    week2 = to_millis(tenant.at(8, 9))
    week3 = to_millis(tenant.at(15, 9))

    def cmd(action, actor="dispatcher", **input_):
        nonlocal issued
        issued += timedelta(minutes=1)
        return {"command_id": str(uuid.uuid4()), "tenant_id": tenant.tenant, "action": action, "actor": {"user_id": tenant.id(actor)}, "issued_at": iso(issued), "input": input_}

    def window(day, hour, hours=1):
        return {"start": iso(tenant.at(day, hour)), "end": iso(tenant.at(day, hour + hours))}

    return [
        cmd("scheduling.reschedule", entry_id=tenant.id("visit"), window=window(1, 14), reason="later"),
        cmd("scheduling.create_entry", assigned_user_ids=[tenant.id("tech1"), tenant.id("tech2")], title="Install", window=window(4, 9, 2),
            link={"type": "ticket", "id": tenant.id("ticket2")}),
        cmd("scheduling.reschedule", entry_id=f"{standup}_{week2}", window=window(9, 11)),
        cmd("scheduling.cancel", entry_id=f"{standup}_{week3}", reason="holiday"),
        cmd("scheduling.reassign", entry_id=tenant.id("setup"), assigned_user_ids=[tenant.id("tech1")], reason="swap"),
        cmd("scheduling.reschedule", entry_id=tenant.id("setup"), window=window(1, 14), conflict_mode="shift"),
        cmd("scheduling.assign_user", user_id=tenant.id("tech2"), window=window(4, 10), link={"type": "ticket", "id": tenant.id("ticket1")}, conflict_mode="override"),
        cmd("scheduling.complete", entry_id=tenant.id("visit"), outcome="fixed"),
        cmd("scheduling.no_show", entry_id=tenant.id("setup")),
        cmd("scheduling.reschedule", entry_id=f"{standup}_{to_millis(tenant.at(22, 9))}", window=window(23, 9), recurrence_scope="future"),
    ]


def test_replaying_the_topic_after_a_restore_rebuilds_identical_rows_and_event_ids(base_settings, owner, registry, tenant):
    settings = topic_settings(replace(base_settings, schema_registry_url="mock://tests"), f"replay{uuid.uuid4().hex[:8]}")
    sent = commands(tenant)
    first = Stack(settings, owner, registry)
    try:
        # Keyed by tenant: these commands touch each other's slots, so they must keep one order.
        for c in sent:
            first.send(c, key=tenant.tenant)
        replies = [first.reply(c["command_id"]) for c in sent]
        assert all(r["status"] == "OK" for r in replies), [r["error"] for r in replies if r["error"]]
        first.quiesce()
    finally:
        first.close()
    before = snapshot(owner, tenant)
    assert before[1], "the stream raised events"

    restore(owner, tenant)
    again = Stack(replace(settings, consumer_group=settings.consumer_group + ".replay"), owner, registry)
    try:
        for c in sent:
            assert again.reply(c["command_id"], nth=2)["duplicate"] is False
        again.quiesce()
    finally:
        again.close()
    after = snapshot(owner, tenant)
    assert after[1] == before[1]
    for table in WRITTEN:
        assert after[0][table.name] == before[0][table.name], table.name


def test_a_replay_reads_no_input_and_sends_the_kept_replies_and_a_resent_command_is_read_whole(base_settings, owner, registry, tenant, monkeypatch):
    settings = topic_settings(replace(base_settings, schema_registry_url="mock://tests"), f"reread{uuid.uuid4().hex[:8]}")
    sent = commands(tenant)[:4]
    first = Stack(settings, owner, registry)
    try:
        for family, c in zip((Family.SINGLE_OBJECT, Family.REGISTRY, Family.JSON, Family.SINGLE_OBJECT), sent, strict=True):
            first.send(c, family=family, key=tenant.tenant)
        assert all(first.reply(c["command_id"])["status"] == "OK" for c in sent)
    finally:
        first.close()
    # A row recorded before the inbox kept replies: its reply is encoded again.
    with owner.begin() as conn:
        conn.execute(update(t.command_inbox).where(t.command_inbox.c.command_id == sent[1]["command_id"]).values(duplicate_reply=None))
    read, encoded = [], []
    body, encode = Codec._body, Codec.encode_reply
    monkeypatch.setattr(Codec, "_body", staticmethod(lambda envelope, *rest: read.append(envelope["command_id"]) or body(envelope, *rest)))
    monkeypatch.setattr(Codec, "encode_reply", lambda self, reply, *rest: encoded.append(reply["command_id"]) or encode(self, reply, *rest))
    again = Stack(replace(settings, consumer_group=settings.consumer_group + ".again"), owner, registry)
    try:
        replies = [again.reply(c["command_id"], nth=2) for c in sent]
        assert [r["duplicate"] for r in replies] == [True] * len(sent)
        assert [{**r, "duplicate": False} for r in replies] == [{**again.reply(c["command_id"]), "_raw": r["_raw"]} for c, r in zip(sent, replies, strict=True)]
        assert read == [], "the inbox answered every record it was applied from without reading its input"
        assert encoded == [sent[1]["command_id"]], "the replies the inbox kept were sent as they are"
        # The same command in a record of its own: its body is read, found the same, and answered.
        again.send(sent[0], family=Family.SINGLE_OBJECT, key=tenant.tenant)
        assert again.reply(sent[0]["command_id"], nth=3)["duplicate"] is True
        assert read == [sent[0]["command_id"]]
    finally:
        again.close()


def test_the_loop_asks_the_inbox_before_reading_inputs_only_while_the_inbox_answers(base_settings, owner, registry, tenant, monkeypatch):
    """After a batch of new commands the lanes ask the inbox with their claim, a round trip less; a
    resent command is still answered from it, and the batch after that asks it first again."""
    settings = topic_settings(replace(base_settings, schema_registry_url="mock://tests"), f"inboxfirst{uuid.uuid4().hex[:8]}")
    asked = []
    recorded = PartitionWorkers.recorded
    monkeypatch.setattr(PartitionWorkers, "recorded", lambda self, batch: asked.append([i.command.command_id for i in batch]) or recorded(self, batch))
    first, second, third = commands(tenant)[:3]
    stack = Stack(settings, owner, registry)
    try:
        # One command per batch: each is sent once the one before it is answered.
        stack.send(first, key=tenant.tenant)
        applied = stack.reply(first["command_id"])
        stack.send(second, key=tenant.tenant)
        assert stack.reply(second["command_id"])["status"] == "OK"
        stack.send(first, key=tenant.tenant)
        resent = stack.reply(first["command_id"], nth=2)
        assert resent["duplicate"] is True and {**resent, "duplicate": False, "_raw": None} == {**applied, "_raw": None}
        stack.send(third, key=tenant.tenant)
        assert stack.reply(third["command_id"])["status"] == "OK"
        assert asked == [[first["command_id"]], [third["command_id"]]], "asked at start-up and after the batch it answered, not after new commands"
    finally:
        stack.close()
