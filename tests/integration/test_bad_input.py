"""The bad-input catalogue: each kind of bad message gets its own specific, tested outcome."""
import json
import logging
import uuid
from dataclasses import replace

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.codecs import Family
from tests.harness import Stack, topic_settings
from tests.integration.test_walking_skeleton import entry_row, reschedule

pytestmark = pytest.mark.integration

MAX_BYTES = 4096


@pytest.fixture(scope="module")
def strict(base_settings, owner):
    """A service with a small MAX_COMMAND_BYTES and a registry where it may not register schemas."""
    registry = SchemaRegistryClient.new_client({"url": "mock://bad-input"})
    settings = topic_settings(
        replace(base_settings, schema_registry_url="mock://bad-input", max_command_bytes=MAX_BYTES, schema_auto_register=False),
        f"b{uuid.uuid4().hex[:10]}",
    )
    from consumer.schema_registration import register

    register(settings, registry)
    running = Stack(settings, owner, registry)
    yield running
    running.close()


def dead_class(stack, key: bytes) -> dict:
    return stack.dead_letter(lambda d: d["key"] == key)["headers"]


def test_an_oversize_value_is_dead_lettered_unread(strict, tenant):
    command = reschedule(tenant, reason="x" * MAX_BYTES)
    command["command_id"] = str(uuid.uuid4())
    strict.send_raw(json.dumps(command).encode(), key=b"big")
    after = strict.send(reschedule(tenant, hour=16))
    headers = dead_class(strict, b"big")
    assert headers["dlq.error.class"] == "MessageTooLarge"
    assert f"MAX_COMMAND_BYTES ({MAX_BYTES})" in headers["dlq.error.message"]
    assert strict.reply(after)["status"] == "OK"
    assert strict.replies(command["command_id"]) == [], "a value never read has no command_id to answer"


def test_invalid_utf8_in_json_is_dead_lettered(strict, tenant):
    strict.send_raw(b'{"command_id": "\xff\xfe"}', key=b"utf8")
    headers = dead_class(strict, b"utf8")
    assert headers["dlq.error.class"] == "InvalidUtf8"


def test_a_schema_id_the_registry_does_not_know_is_dead_lettered(strict, tenant):
    strict.send_raw(b"\x00" + (987654).to_bytes(4, "big") + b"\x02\x04", key=b"schema-id")
    headers = dead_class(strict, b"schema-id")
    assert headers["dlq.error.class"] == "UnknownSchemaId"
    assert "987654" in headers["dlq.error.message"]


def test_a_wrongly_typed_envelope_field_is_dead_lettered_with_an_error_reply(strict, tenant):
    command = {**reschedule(tenant), "command_id": str(uuid.uuid4()), "action_version": "one"}
    strict.send_raw(json.dumps(command).encode(), key=b"types")
    headers = dead_class(strict, b"types")
    assert headers["dlq.error.class"] == "InvalidEnvelope" and "action_version" in headers["dlq.error.message"]
    reply = strict.reply(command["command_id"])
    assert reply["error"]["code"] == "VALIDATION_ERROR" and reply["error"]["details"]["dead_lettered"] is True


def test_an_avro_input_that_cannot_be_read_is_dead_lettered_and_answered_even_for_a_recorded_command_id(strict, tenant):
    command = reschedule(tenant) | {"command_id": str(uuid.uuid4())}
    whole = strict.codec.encode_command(command, Family.SINGLE_OBJECT, strict.settings.commands_topic)
    # The envelope comes first and is whole; the input is cut short.
    strict.send_raw(whole[:-3], key=b"cut")
    headers = dead_class(strict, b"cut")
    assert headers["dlq.error.class"] == "AvroDecodeError"
    reply = strict.reply(command["command_id"])
    assert reply["error"]["code"] == "VALIDATION_ERROR" and reply["error"]["details"]["dead_lettered"] is True
    # Applied from a readable record, then resent unreadable: a record other than the applied one is read whole.
    applied = strict.send(reschedule(tenant, hour=17), family=Family.SINGLE_OBJECT)
    assert strict.reply(applied)["status"] == "OK"
    unreadable = strict.codec.encode_command(reschedule(tenant, hour=17) | {"command_id": applied}, Family.SINGLE_OBJECT, strict.settings.commands_topic)
    strict.send_raw(unreadable[:-3], key=b"cut-again")
    assert dead_class(strict, b"cut-again")["dlq.error.class"] == "AvroDecodeError"
    assert strict.reply(applied, nth=2)["error"]["details"]["dead_lettered"] is True


def test_a_wrongly_typed_input_field_is_answered_and_recorded(strict, tenant):
    command = reschedule(tenant)
    command["input"]["window"]["end"] = 42
    command_id = strict.send(command)
    reply = strict.reply(command_id)
    assert reply["error"]["code"] == "VALIDATION_ERROR" and reply["error"]["details"]["path"] == "input.window.end"
    strict.send(command | {"command_id": command_id})
    assert strict.reply(command_id, nth=2)["duplicate"] is True


def test_a_command_id_reused_with_another_body_is_answered_from_the_inbox_and_logged(strict, tenant, owner, caplog):
    first = strict.send(reschedule(tenant, hour=15))
    assert strict.reply(first)["status"] == "OK"
    before = entry_row(owner, tenant)
    with caplog.at_level(logging.WARNING, logger="schedule_consumer.processor"):
        strict.send(reschedule(tenant, hour=18) | {"command_id": first})
        again = strict.reply(first, nth=2)
    assert again["duplicate"] is True and again["output"] == strict.reply(first)["output"]
    assert entry_row(owner, tenant).scheduled_start == before.scheduled_start, "the second body was not applied"
    conflict = [r for r in caplog.records if "reused with a different body" in r.getMessage()]
    assert conflict and conflict[0].command_id == first and conflict[0].tenant_id == tenant.tenant


def test_a_tenant_that_does_not_exist_is_not_found(strict, tenant):
    command = reschedule(tenant) | {"tenant_id": str(uuid.uuid4())}
    reply = strict.reply(strict.send(command))
    assert reply["error"]["code"] == "NOT_FOUND"
    assert reply["error"]["message"] == "tenant does not exist"
    assert reply["error"]["details"] == {"tenant_id": command["tenant_id"]}


def test_a_reply_that_cannot_be_encoded_takes_the_commands_writes_back(strict, tenant, owner):
    """Avro replies to a topic whose subject nobody registered: the command is
    dead-lettered after its attempts and leaves the schedule as it was."""
    before = entry_row(owner, tenant)
    command = reschedule(tenant, hour=19) | {"reply_to": f"{strict.settings.replies_topic}.unregistered"}
    command_id = strict.send(command, family=Family.REGISTRY, key="unencodable")
    dead = strict.dead_letter(lambda d: d["key"] == b"unencodable")
    assert dead["headers"]["dlq.error.class"] == "SchemaRegistryError"
    assert dead["headers"]["dlq.attempts"] == "3"
    assert entry_row(owner, tenant).scheduled_start == before.scheduled_start
    assert strict.replies(command_id) == []
    assert strict.reply(strict.send(reschedule(tenant, hour=20)))["status"] == "OK", "the service carries on"
