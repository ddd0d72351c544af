"""Command decoding and reply/event encoding, without services."""
import io
import json
import uuid

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer.avro_reads import without_uuids
from consumer.avro_schemas import SchemaSet
from consumer.codecs import SINGLE_OBJECT_MAGIC, Codec, Family, PoisonMessage, RegistryUnavailable, _ask_registry
from handlers.registry import ACTIONS

TENANT = str(uuid.uuid4())
USER = str(uuid.uuid4())


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaSet(), frozenset(ACTIONS))


def command(**overrides):
    base = {
        "command_id": str(uuid.uuid4()),
        "tenant_id": TENANT,
        "action": "scheduling.reschedule",
        "actor": {"user_id": USER},
        "input": {"entry_id": str(uuid.uuid4()), "window": {"start": "2027-01-05T10:00:00+01:00", "end": "2027-01-05T11:00:00Z"}},
    }
    base.update(overrides)
    return base


def test_json_command_gets_defaults_and_utc_instants(codec):
    decoded = codec.decode_command(json.dumps(command()).encode())
    assert decoded.family == Family.JSON and decoded.input_error is None
    assert decoded.input["conflict_mode"] == "fail" and decoded.input["recurrence_scope"] == "single"
    assert decoded.input["window"]["start"].isoformat() == "2027-01-05T09:00:00+00:00"
    assert decoded.action_version == 1 and decoded.issued_at is None


@pytest.mark.parametrize("family", [Family.SINGLE_OBJECT])
def test_avro_round_trip_hashes_like_json(codec, family):
    cmd = command()
    avro = codec.decode_command(codec.encode_command(cmd, family, "t"))
    plain = codec.decode_command(json.dumps(cmd).encode())
    assert avro.input == plain.input and avro.body_hash == plain.body_hash


def test_avro_uuid_fields_of_the_input_decode_as_strings_like_json(codec):
    users = [str(uuid.uuid4()), str(uuid.uuid4())]
    cmd = command(action="scheduling.reassign", input={"entry_id": str(uuid.uuid4()), "assigned_user_ids": users})
    avro = codec.decode_command(codec.encode_command(cmd, Family.SINGLE_OBJECT, "t"))
    assert avro.input["assigned_user_ids"] == users
    assert avro.input == codec.decode_command(json.dumps(cmd).encode()).input


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (b"", "EmptyValue"),
        (b"\x07garbage", "UnknownEncoding"),
        (b"{not json", "InvalidJson"),
        (b'{"a": "\xff"}', "InvalidUtf8"),
        (b"[1, 2]", "UnknownEncoding"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "UnknownSchemaFingerprint"),
        (b"\x00\x00\x00\x00\x01body", "SchemaRegistryNotConfigured"),
    ],
)
def test_poison_values_are_named(codec, value, error_class):
    with pytest.raises(PoisonMessage) as e:
        codec.decode_command(value)
    assert e.value.error_class == error_class


def test_envelope_errors_are_poison_but_keep_what_could_be_read(codec):
    cmd = command()
    del cmd["tenant_id"]
    with pytest.raises(PoisonMessage) as e:
        codec.decode_command(json.dumps(cmd).encode())
    assert e.value.error_class == "InvalidEnvelope" and "command.tenant_id: is required" in e.value.message
    assert e.value.partial["command_id"] == cmd["command_id"]


@pytest.mark.parametrize(
    ("actor", "message"),
    [({}, "exactly one"), ({"user_id": USER, "workflow_run_id": USER}, "exactly one"), ({"user_id": "bob"}, "not a UUID")],
)
def test_actor_must_name_exactly_one_valid_id(codec, actor, message):
    with pytest.raises(PoisonMessage) as e:
        codec.decode_command(json.dumps(command(actor=actor)).encode())
    assert message in e.value.message


def test_unknown_action_is_poison(codec):
    with pytest.raises(PoisonMessage) as e:
        codec.decode_command(json.dumps(command(action="scheduling.teleport")).encode())
    assert e.value.error_class == "UnknownAction"


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"window": {"start": "2027-01-05T10:00:00", "end": "2027-01-05T11:00:00Z"}}, "input.window.start"),
        ({"conflict_mode": "maybe"}, "input.conflict_mode"),
        ({"window": {"start": "2027-01-05T10:00:00Z"}}, "input.window.end"),
        ({"reason": 5}, "input.reason"),
        ({"colour": "red"}, "input.colour"),
    ],
)
def test_input_errors_are_answered_with_the_field_path(codec, patch, path):
    cmd = command()
    cmd["input"].update(patch)
    decoded = codec.decode_command(json.dumps(cmd).encode())
    assert decoded.input is None and decoded.input_error.path == path


def test_replies_encode_in_each_family_and_decode_back(codec):
    reply = {
        "command_id": str(uuid.uuid4()), "correlation_id": None, "tenant_id": TENANT, "action": "scheduling.find_entry",
        "status": "OK", "output": {"found": False, "entry": None}, "error": None, "duplicate": True,
        "processed_at": "2027-01-05T10:00:00.000Z",
    }  # fmt: skip
    for family in (Family.JSON, Family.SINGLE_OBJECT):
        assert codec.decode_reply(codec.encode_reply(reply, family, "replies").value) == reply
    error = {**reply, "status": "ERROR", "output": None, "error": {"code": "NOT_FOUND", "message": "x", "details": {"entry_id": "e"}}}
    assert codec.decode_reply(codec.encode_reply(error, Family.SINGLE_OBJECT, "replies").value) == error


@pytest.mark.parametrize("family", [Family.JSON, Family.SINGLE_OBJECT])
def test_a_reply_comes_with_its_bytes_as_a_duplicate(codec, family):
    first = {
        "command_id": str(uuid.uuid4()), "correlation_id": "c", "tenant_id": TENANT, "action": "scheduling.find_entry",
        "status": "OK", "output": {"found": False, "entry": None}, "error": None, "duplicate": False,
        "processed_at": "2027-01-05T10:00:00.000Z",
    }  # fmt: skip
    values = codec.encode_reply(first, family, "replies")
    again = {**first, "duplicate": True}
    assert codec.decode_reply(values.value) == codec.decode_reply(codec.encode_reply(first, family, "replies").value)
    assert codec.decode_reply(values.value)["duplicate"] is False
    assert codec.decode_reply(values.as_duplicate) == {**codec.decode_reply(values.value), "duplicate": True}
    assert values.as_duplicate == codec.encode_reply(again, family, "replies").value
    assert codec.encode_reply(again, family, "replies").as_duplicate == values.as_duplicate


@pytest.mark.parametrize(
    ("raised", "transient"),
    [
        (SchemaRegistryError(503, 50003, "unavailable"), True),
        (SchemaRegistryError(429, 42900, "slow down"), True),
        (ConnectionRefusedError("refused"), True),
        (TimeoutError("read timed out"), True),
        (SchemaRegistryError(404, 40401, "Subject not found"), False),
        (SchemaRegistryError(409, 409, "incompatible"), False),
    ],
)
def test_a_registry_that_cannot_answer_is_transient_and_a_refusal_is_not(raised, transient):
    def call() -> None:
        raise raised

    with pytest.raises(RegistryUnavailable if transient else SchemaRegistryError):
        _ask_registry(call)


PINNED = {
    "command_id": "5e0f8a55-3c5e-4d6f-9a51-0b8f5f3f2a10",
    "tenant_id": "11111111-2222-4333-8444-555555555555",
    "action": "scheduling.reschedule",
    "actor": {"user_id": "fac7361c-64e7-5308-80c3-90311c483b83"},
    "correlation_id": "corr-1",
    "reply_to": "replies.x",
    "issued_at": "2027-01-04T09:30:00.250+01:00",
    "input": {
        "entry_id": "16153593-12f7-5725-a271-fb031654e6ca_1799229600000",
        "window": {"start": "2027-01-05T14:00:00+01:00", "end": "2027-01-05T15:00:00Z", "timezone": "Europe/Berlin"},
        "reason": "Kunde möchte später",
    },
}
PINNED_CREATE = {
    "command_id": "0b6c4c1e-5d3f-4b7a-8f0e-2f5c1a9d7e31",
    "tenant_id": "11111111-2222-4333-8444-555555555555",
    "action": "scheduling.create_entry",
    "actor": {"workflow_run_id": "7d3c2b1a-0f9e-4d8c-b7a6-5e4d3c2b1a09"},
    "input": {
        "assigned_user_ids": ["b79ac7df-d565-5bff-87a4-94ff1e0eea2a", "4272b15a-e713-5538-9b19-832c227a5d69"],
        "title": "Install",
        "window": {"start": "2027-01-05T08:00:00Z", "end": "2027-01-05T12:00:00Z"},
        "link": {"type": "ticket", "id": "92900b14-2007-5c02-93c3-6e110aa95db8"},
        "recurrence": {"frequency": "weekly", "daysOfWeek": [0, 2], "count": 4},
    },
}


@pytest.mark.parametrize(
    ("cmd", "body_hash"),
    [
        (PINNED, "86ffaa91da2dc7f5b3ba2d929343e5d13587f575435ba1266053100a3d5183b3"),
        (PINNED_CREATE, "eed34167958fe75ab26488623b58aaa8ffae312c11afc110244588c923e0c1c9"),
        (
            {**PINNED, "input": {"entry_id": "x", "window": {"start": "2027-01-05T14:00:00"}}},
            "1b44dc72c812183da85be016aa5cdc43864d4126d22489cf0dc4e6cad97852b1",
        ),
    ],
)
def test_body_hash_is_stable_across_releases_and_families(codec, cmd, body_hash):
    # The inbox compares stored hashes with new ones: a change here makes every replayed command look reused.
    decoded = codec.decode_command(json.dumps(cmd).encode())
    assert decoded.body_hash == body_hash
    if decoded.input_error is None:
        assert codec.decode_command(codec.encode_command(cmd, Family.SINGLE_OBJECT, "t")).body_hash == body_hash


def _written_as_is(codec, cmd, **raw):
    """Single-object bytes of a command whose envelope holds whatever strings a producer put there."""
    schema = codec.schemas.command
    uuid_free = fastavro.parse_schema(without_uuids(json.loads(schema.text)))
    record = fastavro.schemaless_reader(io.BytesIO(codec.encode_command(cmd, Family.SINGLE_OBJECT, "t")[10:]), uuid_free, None, return_record_name=True)
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + schema.fingerprint)
    fastavro.schemaless_writer(buf, uuid_free, {**record, **raw})
    return buf.getvalue()


def test_avro_uuid_fields_come_out_in_canonical_form(codec):
    cmd = command()
    decoded = codec.decode_command(_written_as_is(codec, cmd, command_id=cmd["command_id"].upper(), tenant_id="{%s}" % TENANT))
    assert (decoded.command_id, decoded.tenant_id) == (cmd["command_id"], TENANT)
    assert decoded.body_hash == codec.decode_command(json.dumps(cmd).encode()).body_hash


def test_an_avro_uuid_field_that_is_no_uuid_is_poison(codec):
    with pytest.raises(PoisonMessage) as e:
        codec.decode_command(_written_as_is(codec, command(), tenant_id="bob"))
    assert (e.value.error_class, e.value.message) == ("AvroDecodeError", "cannot decode the Avro body: badly formed hexadecimal UUID string")


def test_a_registry_writer_equal_to_the_reader_is_read_as_the_reader():
    registry = SchemaRegistryClient.new_client({"url": "mock://same-writer"})
    codec = Codec(SchemaSet(), frozenset(ACTIONS), registry, auto_register=True)
    value = codec.encode_command(command(), Family.REGISTRY, "commands")
    assert codec._registry_writer(value) is codec.schemas.command.parsed
    assert codec.decode_command(value).family == Family.REGISTRY
