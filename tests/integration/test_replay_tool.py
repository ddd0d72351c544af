"""`schedule-consumer replay`: rewinding the stopped service's group, applying a bounded range, dry runs."""
import json
import uuid
from datetime import datetime, timezone

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import func, select

from consumer.embedded import wait_until
from handlers.timeutil import iso
from schemas.tables import command_inbox
from tests.harness import Stack, topic_settings
from tests.integration.test_replay import commands, snapshot

pytestmark = pytest.mark.integration

GARBAGE = b"\x07\xffnot a command"


def group_offsets(settings):
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    request = ConsumerGroupTopicPartitions(settings.consumer_group, [TopicPartition(settings.commands_topic, p) for p in range(3)])
    answer = admin.list_consumer_group_offsets([request])[settings.consumer_group].result(15)
    return {tp.partition: tp.offset for tp in answer.topic_partitions}


def wait_group_empty(settings):
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    group = settings.consumer_group

    def empty() -> bool:
        return admin.describe_consumer_groups([group])[group].result(15).state == ConsumerGroupState.EMPTY

    wait_until(empty, 30, f"group {group} to have no members", interval=0.2)


def inbox_count(owner, tenant):
    with owner.connect() as conn:
        return conn.execute(select(func.count()).select_from(command_inbox).where(command_inbox.c.tenant == tenant.tenant)).scalar()


@pytest.fixture
def applied(base_settings, owner, tenant):
    """A stack whose commands (and one garbage record) were all consumed and published."""
    settings = topic_settings(base_settings, f"rp{uuid.uuid4().hex[:8]}")
    stack = Stack(settings, owner)
    sent = commands(tenant)
    for c in sent:
        stack.send(c, key=tenant.tenant)
    stack.send_raw(GARBAGE, key=b"garbage")
    firsts = {c["command_id"]: stack.reply(c["command_id"]) for c in sent}
    assert all(r["status"] == "OK" for r in firsts.values())
    stack.dead_letter(lambda d: d["key"] == b"garbage")
    stack.quiesce()
    yield stack, sent, firsts
    stack.close()


def test_rewinding_to_offset_0_is_refused_while_the_service_runs_then_every_command_is_answered_as_a_duplicate(applied, owner, tenant, cli):
    stack, sent, firsts = applied
    before, events_before = snapshot(owner, tenant), len(stack.seen.events)
    offsets = group_offsets(stack.settings)

    status, out, err = cli(stack.settings, "replay", "--from-offset", "0")
    assert status == 2, out + err
    assert "is active" in err and "stop the service" in err
    assert group_offsets(stack.settings) == offsets

    stack.service.stop()
    wait_group_empty(stack.settings)
    status, out, err = cli(stack.settings, "replay", "--from-offset", "0")
    assert status == 0, err
    assert f"Group {stack.settings.consumer_group} on {stack.settings.commands_topic} rewound:" in out
    assert group_offsets(stack.settings) == {p: 0 if o >= 0 else o for p, o in offsets.items()}

    stack.start_service()
    for c in sent:
        again = stack.reply(c["command_id"], nth=2)
        assert again["duplicate"] is True
        assert again["output"] == firsts[c["command_id"]]["output"]
    stack.quiesce()
    assert snapshot(owner, tenant) == before
    assert len(stack.seen.events) == events_before
    # Undecodable records are dead-lettered again: the service meets them afresh.
    wait_until(lambda: sum(d["key"] == b"garbage" for d in stack.seen.dead_letters) == 2, 30, "the garbage to be dead-lettered again")


def test_a_bounded_replay_applies_the_range_here_while_the_service_runs(applied, owner, tenant, cli):
    stack, sent, firsts = applied
    before, events_before = snapshot(owner, tenant), len(stack.seen.events)
    offsets = group_offsets(stack.settings)

    status, out, err = cli(stack.settings, "replay", "--from-offset", "0", "--to-timestamp", "now", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["mode"] == "apply" and report["dry_run"] is False
    assert report["counts"] == {"duplicate": len(sent), "undecodable": 1}
    assert report["undecodable"] == {"UnknownEncoding": 1}
    for c in sent:
        assert stack.reply(c["command_id"], nth=2)["duplicate"] is True
    stack.quiesce()
    assert snapshot(owner, tenant) == before
    assert len(stack.seen.events) == events_before
    assert group_offsets(stack.settings) == offsets
    # Not dead-lettered twice: the service did it when it met the record.
    assert sum(d["key"] == b"garbage" for d in stack.seen.dead_letters) == 1


def test_a_dry_run_counts_new_duplicate_and_undecodable_records_and_writes_nothing(applied, owner, tenant, cli):
    stack, sent, _ = applied
    stack.service.stop()
    wait_group_empty(stack.settings)
    # Sent while the service is stopped: not applied yet.
    fresh = stack.send({**commands(tenant)[0], "command_id": str(uuid.uuid4())}, key=tenant.tenant)
    offsets, inbox_before, replies_before = group_offsets(stack.settings), inbox_count(owner, tenant), sum(map(len, stack.seen.replies.values()))

    status, out, err = cli(stack.settings, "replay", "--from-offset", "0", "--dry-run", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["mode"] == "rewind" and report["dry_run"] is True
    assert report["counts"] == {"duplicate": len(sent), "new": 1, "undecodable": 1}

    status, out, err = cli(stack.settings, "replay", "--from-offset", "0", "--dry-run")
    assert status == 0, err
    assert out.startswith("Dry run: nothing written.")
    assert f"The service would re-read {len(sent) + 2} records from there: 1 new (would be run by their handler), {len(sent)} answered as duplicates, 1 undecodable (dead-lettered again: UnknownEncoding 1)." in out

    stack.quiesce()
    assert group_offsets(stack.settings) == offsets
    assert inbox_count(owner, tenant) == inbox_before
    assert sum(map(len, stack.seen.replies.values())) == replies_before
    assert stack.replies(fresh) == []


def test_a_replay_from_a_timestamp_covers_only_the_records_since(base_settings, owner, tenant, cli):
    settings = topic_settings(base_settings, f"rt{uuid.uuid4().hex[:8]}", partitions=2)
    stack = Stack(settings, owner)
    try:
        sent = commands(tenant)
        early, late = sent[:4], sent[4:]
        for c in early:
            stack.send(c, key=tenant.tenant)
        for c in early:
            stack.reply(c["command_id"])
        middle = datetime.now(timezone.utc)
        for c in late:
            stack.send(c, key=tenant.tenant)
        for c in late:
            stack.reply(c["command_id"])
        stack.quiesce()

        status, out, err = cli(settings, "replay", "--from-timestamp", iso(middle), "--to-timestamp", "now", "--json")
        assert status == 0, err
        report = json.loads(out)
        assert report["counts"] == {"duplicate": len(late)}
        for c in late:
            assert stack.reply(c["command_id"], nth=2)["duplicate"] is True
        stack.quiesce()
        assert all(len(stack.replies(c["command_id"])) == 1 for c in early)
    finally:
        stack.close()


def test_bad_positions_are_usage_errors(base_settings, cli):
    settings = topic_settings(base_settings, f"rb{uuid.uuid4().hex[:8]}")
    status, _, err = cli(settings, "replay", "--from-offset", "9:0")
    assert status == 2 and "has no partition 9" in err
    status, _, err = cli(settings, "replay", "--from-offset", "zero")
    assert status == 2 and "expected PARTITION:OFFSET or OFFSET" in err
    status, _, err = cli(settings, "replay", "--from-timestamp", "2027-03-01T10:00:00")
    assert status == 2 and "instant needs a UTC offset" in err
