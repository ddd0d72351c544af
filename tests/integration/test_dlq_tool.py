"""`schedule-consumer dlq list|show|redrive` on what the running service dead-lettered."""
import json
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumer.embedded import wait_until
from tests.harness import failing_updates
from tests.integration.test_walking_skeleton import entry_row, reschedule

pytestmark = pytest.mark.integration

GARBAGE = b"\x07\xffnot a command"


def dead_letters(cli, stack, *args):
    status, out, err = cli(stack.settings, "dlq", "list", "--json", *args)
    assert status == 0, err
    return json.loads(out)


def wait_dead_letters(cli, stack, predicate, count=1):
    """The dead letters the CLI lists that match, once `count` of them are there."""
    found = []

    def listed() -> bool:
        found[:] = [d for d in dead_letters(cli, stack) if predicate(d)]
        return len(found) >= count

    wait_until(listed, 30, "the dead letters to be listed", interval=0.2)
    return found


def command_record(settings, position):
    """The record at PARTITION:OFFSET of the command topic, as the service reads it."""
    partition, offset = map(int, position.split(":"))
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"peek-{uuid.uuid4()}"})
    consumer.assign([TopicPartition(settings.commands_topic, partition, offset)])
    got = []

    def read() -> bool:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg)
        return bool(got)

    try:
        wait_until(read, 15, "the redriven record")
    finally:
        consumer.close()
    return got[0]


def test_list_and_show_the_poison_the_service_dead_lettered(stack, tenant, cli):
    garbage_key = f"garbage-{uuid.uuid4()}".encode()
    stack.send_raw(GARBAGE, key=garbage_key, headers=[("trace", b"x")])
    teleport = {**reschedule(tenant), "action": "scheduling.teleport", "command_id": str(uuid.uuid4())}
    stack.send_raw(json.dumps(teleport).encode(), key=b"teleport")
    stack.dead_letter(lambda d: d["key"] == garbage_key)
    stack.dead_letter(lambda d: d["headers"].get("dlq.error.class") == "UnknownAction")

    # A redelivery (a rebalance before the offset commit) may dead-letter a record twice: the first copy is checked.
    listed = dead_letters(cli, stack)
    garbage = next(d for d in listed if d["key"] == garbage_key.decode())
    unknown = next(d for d in listed if d["command_id"] == teleport["command_id"])
    assert garbage["error_class"] == "UnknownEncoding" and garbage["error_message"].startswith("value starts with byte 0x07")
    assert garbage["command_id"] is None and garbage["attempts"] == "1" and garbage["redrive_count"] == 0
    assert garbage["original"]["topic"] == stack.settings.commands_topic and garbage["failed_at"].endswith("Z")
    assert unknown["error_class"] == "UnknownAction" and unknown["action"] == "scheduling.teleport" and unknown["tenant_id"] == tenant.tenant

    status, out, _ = cli(stack.settings, "dlq", "list", "--error-class", "UnknownAction")
    assert status == 0
    assert f"command {teleport['command_id']}  action scheduling.teleport  tenant {tenant.tenant}" in out
    assert "UnknownEncoding" not in out

    status, out, _ = cli(stack.settings, "dlq", "show", teleport["command_id"], "--json")
    assert status == 0
    shown = json.loads(out)[0]
    headers = dict(shown["headers"])
    assert headers["dlq.error.class"] == "UnknownAction" and headers["dlq.original.offset"] == unknown["original"]["offset"]
    assert shown["key"] == "teleport" and shown["value"] == teleport and shown["decoded"] is None

    status, out, _ = cli(stack.settings, "dlq", "show", garbage["position"])
    assert status == 0
    assert f"dead letter {garbage['position']}" in out and "  trace: x" in out and "value (base64): B/9ub3QgYSBjb21tYW5k" in out

    status, _, err = cli(stack.settings, "dlq", "show", "0:999999")
    assert status == 2 and "no dead letter 0:999999" in err


def test_a_command_dead_lettered_by_a_failing_database_is_applied_when_redriven_after_the_fix(stack, tenant, owner, cli):
    # Every update of this tenant's entries fails.
    with failing_updates(owner, f"new.tenant = '{tenant.tenant}'"):
        command_id = stack.send(reschedule(tenant, hour=15))
        failed = stack.reply(command_id)
        assert failed["error"]["code"] == "INTERNAL_ERROR"
        dead = wait_dead_letters(cli, stack, lambda d: d["command_id"] == command_id)[0]
    assert dead["attempts"] == "3" and "storage maintenance" in dead["error_message"]
    status, out, _ = cli(stack.settings, "dlq", "show", dead["position"], "--json")
    assert json.loads(out)[0]["decoded"]["input"]["entry_id"] == tenant.id("visit")

    status, out, err = cli(stack.settings, "dlq", "redrive", command_id, "--dry-run")
    assert status == 0, err
    assert f"Would redrive 1 dead letter to {stack.settings.commands_topic}:" in out and "redrive.count 1" in out
    assert entry_row(owner, tenant).scheduled_start == tenant.at(1, 10)

    status, out, err = cli(stack.settings, "dlq", "redrive", command_id, "--json")
    assert status == 0, err
    (sent,) = json.loads(out)["sent"]
    assert sent["sent_to"].split(":")[0] == dead["original"]["partition"]
    applied = stack.reply(command_id, nth=2)
    assert applied["status"] == "OK" and applied["duplicate"] is False
    assert entry_row(owner, tenant).scheduled_start == tenant.at(1, 15)
    record = command_record(stack.settings, sent["sent_to"])
    assert record.key() == f"{tenant.tenant}:{tenant.id('visit')}".encode()
    assert json.loads(record.value())["command_id"] == command_id
    headers = dict(record.headers() or [])
    assert headers["redrive.count"] == b"1" and not [k for k in headers if k.startswith("dlq.")]


def test_a_redriven_message_that_fails_again_carries_its_count_and_is_refused_above_the_limit(stack, cli):
    key = f"garbage-{uuid.uuid4()}".encode()
    stack.send_raw(GARBAGE, key=key)
    stack.dead_letter(lambda d: d["key"] == key)
    first = wait_dead_letters(cli, stack, lambda d: d["key"] == key.decode())[0]
    assert first["redrive_count"] == 0

    status, out, err = cli(stack.settings, "dlq", "redrive", first["position"])
    assert status == 0, err
    again = stack.dead_letter(lambda d: d["key"] == key and d["headers"].get("redrive.count") == "1")
    assert again["value"] == GARBAGE and again["headers"]["dlq.error.class"] == "UnknownEncoding"
    second = wait_dead_letters(cli, stack, lambda d: d["key"] == key.decode() and d["redrive_count"] == 1)[0]

    assert dict(json.loads(cli(stack.settings, "dlq", "show", second["position"], "--json")[1])[0]["headers"])["redrive.origin"] == (
        f"{stack.settings.commands_topic}:{first['original']['partition']}:{first['original']['offset']}"
    )

    status, out, _ = cli(stack.settings, "dlq", "redrive", first["position"], second["position"], "--max-redrives", "1")
    assert status == 1
    assert f"skipped {first['position']}: {second['position']} is the latest dead letter of the same command record" in out
    assert f"refused {second['position']}: already redriven 1 time (limit 1" in out

    status, out, err = cli(stack.settings, "dlq", "redrive", second["position"])
    assert status == 0, err
    stack.dead_letter(lambda d: d["key"] == key and d["headers"].get("redrive.count") == "2")


def test_redrive_needs_a_choice(stack, cli):
    status, _, err = cli(stack.settings, "dlq", "redrive")
    assert status == 2 and "--error-class or --all" in err
