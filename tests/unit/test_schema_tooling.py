"""`schemas check` against released versions, and `schemas register` against the in-memory registry."""
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer import config
from consumer.avro_schemas import SchemaSet
from consumer.cli import main
from consumer.codecs import Codec, Family
from consumer.embedded import free_port
from consumer.schema_registration import register, unregistered
from handlers.registry import ACTIONS
from schemas import AVRO_DIR


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, folder)
    return folder


def named(node: Any, name: str) -> dict[str, Any]:
    """The definition of a named type inside a schema's JSON."""
    if isinstance(node, dict):
        if node.get("name") == name and node.get("type") in ("record", "enum"):
            return node
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        children = []
    for child in children:
        found = named(child, name)
        if found:
            return found
    return {}


def edit(folder: Path, file: str, change) -> None:
    path = folder / file
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2) + "\n")


def run_check(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["schemas", "check", "--dir", str(folder)])
    out = capsys.readouterr()
    return status, out.out + out.err


def test_the_working_tree_reads_every_release(capsys):
    status, output = run_check(AVRO_DIR, capsys)
    assert status == 0, output


def test_a_new_field_without_default_fails_with_its_name_and_the_diff(schema_copy, capsys):
    edit(schema_copy, "scheduling_command.avsc", lambda s: named(s, "CreateEntryInput")["fields"].append({"name": "priority", "type": "int"}))
    status, output = run_check(schema_copy, capsys)
    assert status == 1
    assert "psa.scheduling.CreateEntryInput.priority: new field without a default" in output
    assert "--- released/1/scheduling_command.avsc" in output and '+              "name": "priority",' in output


def test_a_removed_enum_symbol_fails(schema_copy, capsys):
    edit(schema_copy, "scheduling_command.avsc", lambda s: named(s, "Frequency")["symbols"].remove("monthly"))
    status, output = run_check(schema_copy, capsys)
    assert status == 1
    assert "psa.scheduling.Frequency: symbol(s) monthly removed" in output


def test_a_changed_event_field_type_and_a_removed_schema_fail(schema_copy, capsys):
    edit(schema_copy, "appointment_canceled.avsc", lambda s: named(s, "AppointmentCanceledPayload")["fields"][0].update(type="int"))
    (schema_copy / "appointment_no_show.avsc").unlink()
    status, output = run_check(schema_copy, capsys)
    assert status == 1
    assert "AppointmentCanceledPayload.tenantId: written as string, cannot be read as int" in output
    assert "psa.scheduling.events.AppointmentNoShow (released/1/appointment_no_show.avsc) is gone" in output


def test_a_new_optional_field_and_a_removed_field_pass(schema_copy, capsys):
    def change(schema: dict[str, Any]) -> None:
        fields = named(schema, "AppointmentCompletedPayload")["fields"]
        fields.append({"name": "durationMinutes", "type": ["null", "int"], "default": None})
        fields[:] = [f for f in fields if f["name"] != "outcome"]

    edit(schema_copy, "appointment_completed.avsc", change)
    status, output = run_check(schema_copy, capsys)
    assert status == 0, output


def test_register_puts_every_schema_under_the_subject_the_codec_writes_to():
    settings = config.from_env({}, schema_registry_url="mock://register")
    registry = SchemaRegistryClient.new_client({"url": "mock://register"})
    expected = {"scheduling.commands-value", "scheduling.replies-value"} | {
        f"appointment.events-{s.name}" for s in SchemaSet().events
    }
    assert set(unregistered(settings, registry)) == expected

    registered = dict(register(settings, registry))
    assert set(registered) == expected and len(expected) == 8
    assert unregistered(settings, registry) == []
    # With auto-registration off (the default) the codec only looks subjects up: it finds them.
    codec = Codec(SchemaSet(), frozenset(ACTIONS), registry)
    assert not codec.auto_register
    record = {"id": "2d7cfd23-1f5e-4f70-8d7a-4b8c7f4b5c1e", "eventType": "APPOINTMENT_CANCELED", "timestamp": "2027-01-05T10:00:00.000Z",
              "causationId": "3f66078f-6355-4209-aa5a-f0d9229b4d23", "correlationId": None,
              "payload": {"tenantId": "t", "occurredAt": "2027-01-05T10:00:00.000Z", "actorUserId": None, "actorType": None,
                          "idempotencyKey": "k", "appointmentId": "a", "ticketId": None, "canceledAt": None, "reason": None}}  # fmt: skip
    value = codec.encode_event("APPOINTMENT_CANCELED", record, settings.events_topic)
    assert int.from_bytes(value[1:5], "big") == registered["appointment.events-psa.scheduling.events.AppointmentCanceled"]
    reply = {"command_id": "3f66078f-6355-4209-aa5a-f0d9229b4d23", "correlation_id": None, "tenant_id": "t", "action": "scheduling.cancel",
             "status": "ERROR", "output": None, "error": {"code": "NOT_FOUND", "message": "no entry", "details": None},
             "duplicate": False, "processed_at": "2027-01-05T10:00:00.000Z"}  # fmt: skip
    reply_value = codec.encode_reply(reply, Family.REGISTRY, settings.replies_topic).value
    assert int.from_bytes(reply_value[1:5], "big") == registered["scheduling.replies-value"]


def test_register_also_covers_extra_reply_topics():
    settings = config.from_env({}, schema_registry_url="mock://register-extra")
    registry = SchemaRegistryClient.new_client({"url": "mock://register-extra"})
    subjects = [subject for subject, _ in register(settings, registry, reply_topics=["workflow.replies"])]
    assert "workflow.replies-value" in subjects


def test_register_against_an_unreachable_registry_fails_in_one_line(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    status = main(["schemas", "register", "--schema-registry-url", url, "--startup-timeout-s", "1"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith(f"schedule-consumer schemas: schema registry {url} unreachable:") and "\n" not in err


def test_auto_registration_is_off_unless_switched_on():
    assert not config.from_env({}).schema_auto_register
    assert config.from_env({"SCHEMA_AUTO_REGISTER": "true"}).schema_auto_register
    with pytest.raises(config.ConfigError, match="SCHEMA_AUTO_REGISTER must be true or false, got 'maybe'"):
        config.from_env({"SCHEMA_AUTO_REGISTER": "maybe"})
