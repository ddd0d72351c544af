"""Message encodings: commands in (Schema Registry, single-object Avro, JSON); replies and events out."""
import functools
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer.avro_schemas import NAMESPACE, AvroSchema, Fields, SchemaSet
from consumer.avro_reads import from_avro
from consumer.avro_values import FieldError, canonical_json, to_json

REGISTRY_MAGIC = b"\x00"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
AVRO_CONTENT_TYPE = "application/vnd.apache.avro"
JSON_CONTENT_TYPE = "application/json"


class Family:
    """The encoding family of a command; its reply is written in the same one."""

    REGISTRY = "registry"
    SINGLE_OBJECT = "single-object"
    JSON = "json"


class PoisonMessage(Exception):
    """A value that can never be processed: it goes to the dead-letter topic as it is."""

    def __init__(self, error_class: str, message: str, partial: dict[str, Any] | None = None, family: str = Family.JSON) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        # command_id / tenant_id / reply_to / correlation_id when they could be read.
        self.partial = partial or {}
        self.family = family


@dataclass(frozen=True)
class Body:
    # The action's input in Python form; None when it broke the schema (input_error says how).
    input: dict[str, Any] | None
    input_error: FieldError | None
    body_hash: str


@dataclass(frozen=True)
class DecodedCommand:
    """The envelope, read at once; the body (input and hash) on first use of `body`, which raises
    PoisonMessage for an input that cannot be read. A command the inbox answers from the record it
    was applied from needs only the envelope."""

    family: str
    command_id: str
    tenant_id: str
    action: str
    action_version: int
    actor_user_id: str | None
    actor_workflow_run_id: str | None
    correlation_id: str | None
    reply_to: str | None
    issued_at: datetime | None
    read_body: Callable[[], Body] = field(repr=False, compare=False)

    @functools.cached_property
    def body(self) -> Body:
        return self.read_body()

    @property
    def input(self) -> dict[str, Any] | None:
        return self.body.input

    @property
    def input_error(self) -> FieldError | None:
        return self.body.input_error

    @property
    def body_hash(self) -> str:
        return self.body.body_hash


@dataclass(frozen=True)
class ReplyValues:
    value: bytes
    # The same reply with duplicate = true: what a command read again from the same record is sent.
    as_duplicate: bytes


def content_type(family: str) -> str:
    """The content-type header of a reply in the family."""
    return JSON_CONTENT_TYPE if family == Family.JSON else AVRO_CONTENT_TYPE


def _stem(action: str) -> str:
    return "".join(p.capitalize() for p in action.split(".", 1)[-1].split("_"))


# Cached: asked for every command and every reply, of a handful of actions.
@functools.cache
def input_record(action: str) -> str:
    return f"{NAMESPACE}.{_stem(action)}Input"


@functools.cache
def output_record(action: str) -> str:
    return f"{NAMESPACE}.{_stem(action)}Output"


def value_subject(topic: str) -> str:
    """TopicNameStrategy, for the command and reply envelopes: one schema per topic."""
    return f"{topic}-value"


def record_subject(topic: str, record: str) -> str:
    """TopicRecordNameStrategy, for events: one subject per record type on the topic."""
    return f"{topic}-{record}"


def _partial(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    keys = ("command_id", "tenant_id", "reply_to", "correlation_id", "action")
    return {k: data[k] for k in keys if isinstance(data.get(k), str)}


T = TypeVar("T")


class RegistryUnavailable(Exception):
    """The Schema Registry could not answer (transport error, 5xx, 429): it passes, so retry."""


def _ask_registry(call: Callable[..., T], *args: Any) -> T:
    try:
        return call(*args)
    except SchemaRegistryError as e:
        if e.http_status_code >= 500 or e.http_status_code == 429:
            raise RegistryUnavailable(str(e)) from e
        raise
    except Exception as e:  # the client's transport errors have no common base worth naming
        raise RegistryUnavailable(f"{type(e).__name__}: {e}") from e


class Codec:
    def __init__(self, schemas: SchemaSet, actions: frozenset[str], registry: SchemaRegistryClient | None = None, auto_register: bool = False, max_bytes: int = 1048576) -> None:
        self.schemas = schemas
        self.max_bytes = max_bytes
        self.actions = actions
        self.registry = registry
        self.auto_register = auto_register
        self._writer_by_id: dict[int, Any] = {}
        self._id_by_subject: dict[tuple[str, str], int] = {}
        self._envelope = schemas.command.converter(schemas.command.name, ("input",))
        self._reply = schemas.result.converter(schemas.result.name, ("output", "error"))
        # The envelope, which is all the inbox needs to answer a command, and the input after it.
        self._halves = schemas.command.split("input")
        self._reply_halves = schemas.result.split("duplicate")

    # --- commands -------------------------------------------------------

    def decode_command(self, value: bytes | None) -> DecodedCommand:
        """The whole command: poison anywhere in it raises here."""
        command = self.decode_envelope(value)
        command.body  # noqa: B018 - read now, so that a poison input raises here
        return command

    def decode_envelope(self, value: bytes | None) -> DecodedCommand:
        """Poison in the framing or the envelope raises here, poison in the input on first use of `body`."""
        if not value:
            raise PoisonMessage("EmptyValue", "the message has no value")
        if len(value) > self.max_bytes:
            raise PoisonMessage("MessageTooLarge", f"{len(value)} bytes, more than MAX_COMMAND_BYTES ({self.max_bytes}); not read")
        if value[:1] == REGISTRY_MAGIC:
            return self._decode_avro(value[5:], self._registry_writer(value), Family.REGISTRY)
        if value[:2] == SINGLE_OBJECT_MAGIC:
            return self._decode_avro(value[10:], self._single_object_writer(value), Family.SINGLE_OBJECT)
        if value.lstrip()[:1] == b"{":
            return self._decode_json(value)
        raise PoisonMessage(
            "UnknownEncoding",
            f"value starts with byte 0x{value[0]:02x}: not Schema Registry (0x00), single-object Avro (0xC3 0x01) or a JSON object",
        )

    def _registry_writer(self, value: bytes) -> Any:
        if self.registry is None:
            raise PoisonMessage("SchemaRegistryNotConfigured", "Schema Registry framing, but SCHEMA_REGISTRY_URL is not set", family=Family.REGISTRY)
        if len(value) < 5:
            raise PoisonMessage("TruncatedMessage", "Schema Registry framing without a schema id", family=Family.REGISTRY)
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in self._writer_by_id:
            try:
                schema = _ask_registry(self.registry.get_schema, schema_id)
            except SchemaRegistryError as e:
                if e.http_status_code == 404:
                    raise PoisonMessage("UnknownSchemaId", f"schema id {schema_id} is not in the registry", family=Family.REGISTRY) from e
                raise
            writer = fastavro.parse_schema(json.loads(schema.schema_str))
            # The reader's own object when it is the same schema: that is what takes the fast read.
            self._writer_by_id[schema_id] = self.schemas.command.parsed if writer == self.schemas.command.parsed else writer
        return self._writer_by_id[schema_id]

    def _single_object_writer(self, value: bytes) -> Any:
        if len(value) < 10:
            raise PoisonMessage("TruncatedMessage", "single-object framing without a fingerprint", family=Family.SINGLE_OBJECT)
        writer = self.schemas.by_fingerprint.get(value[2:10])
        if writer is None:
            raise PoisonMessage("UnknownSchemaFingerprint", f"no known schema has fingerprint {value[2:10].hex()}", family=Family.SINGLE_OBJECT)
        return writer.parsed

    def _decode_avro(self, body: bytes, writer: Any, family: str) -> DecodedCommand:
        if writer is self.schemas.command.parsed:
            fo = io.BytesIO(body)
            envelope = self._check_envelope(self._read(self._halves[0], fo, family, {}), family)
            start = fo.tell()
            return self._command(family, envelope, lambda: self._avro_input(envelope, body, start, family))
        envelope, data, error = self._read_avro(body, writer, family)
        return self._command(family, envelope, lambda: self._body(envelope, data, error))

    @staticmethod
    def _read(fields: Fields, fo: io.BytesIO, family: str, envelope: dict[str, Any]) -> dict[str, Any]:
        try:
            return fields.read(fo)
        except Exception as e:  # fastavro raises many types for bad bytes
            raise PoisonMessage("AvroDecodeError", f"cannot decode the Avro body: {e}", _partial(envelope), family) from e

    def _avro_input(self, envelope: dict[str, Any], body: bytes, start: int, family: str) -> Body:
        """The input, from where the envelope ends."""
        fo = io.BytesIO(body)
        fo.seek(start)
        input_name, data = self._read(self._halves[1], fo, family, envelope)["input"]
        return self._body(envelope, *self._matching(envelope, input_name, data))

    @staticmethod
    def _matching(envelope: dict[str, Any], input_name: str, data: dict[str, Any]) -> tuple[dict[str, Any] | None, FieldError | None]:
        if input_name != input_record(envelope["action"]):
            return None, FieldError("input", f"record {input_name} does not match action {envelope['action']}")
        return data, None

    def _read_avro(self, body: bytes, writer: Any, family: str) -> tuple[dict[str, Any], dict[str, Any] | None, FieldError | None]:
        """The whole record of an earlier release's writer, or another one from the registry, resolved
        against the reader: its envelope, its input and what is wrong with the input."""
        try:
            record = from_avro(fastavro.schemaless_reader(
                io.BytesIO(body), writer, self.schemas.command.parsed,
                return_record_name=True, return_record_name_override=True,
            ))  # fmt: skip
        except Exception as e:  # fastavro raises many types for bad bytes or incompatible writers
            raise PoisonMessage("AvroDecodeError", f"cannot decode the Avro body: {e}", family=family) from e
        input_name, data = record.pop("input")
        envelope = self._check_envelope(record, family)
        return envelope, *self._matching(envelope, input_name, data)

    def _decode_json(self, value: bytes) -> DecodedCommand:
        try:
            data = json.loads(value.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise PoisonMessage("InvalidUtf8", f"JSON value is not UTF-8: {e}") from e
        except json.JSONDecodeError as e:
            raise PoisonMessage("InvalidJson", f"not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise PoisonMessage("InvalidJson", "the JSON value is not an object")
        raw_input = data.pop("input", None)
        try:
            envelope = self._envelope(data, "command")
        except FieldError as e:
            raise PoisonMessage("InvalidEnvelope", str(e), _partial(data)) from e
        envelope = self._check_envelope(envelope, Family.JSON)
        convert = self.schemas.command.converter(input_record(envelope["action"]))
        try:
            converted, error = convert(raw_input, "input"), None
        except FieldError as e:
            converted, error = None, e
        return self._command(Family.JSON, envelope, lambda: self._body(envelope, converted, error))

    def _check_envelope(self, envelope: dict[str, Any], family: str) -> dict[str, Any]:
        if envelope["action"] not in self.actions:
            raise PoisonMessage("UnknownAction", f"unknown action {envelope['action']!r}; known: {', '.join(sorted(self.actions))}", _partial(envelope), family)
        if envelope["action_version"] != 1:
            raise PoisonMessage("UnknownActionVersion", f"{envelope['action']} has no version {envelope['action_version']}", _partial(envelope), family)
        actor = envelope["actor"]
        if (actor["user_id"] is None) == (actor["workflow_run_id"] is None):
            raise PoisonMessage("InvalidEnvelope", "command.actor: exactly one of user_id and workflow_run_id is required", _partial(envelope), family)
        return envelope

    def _command(self, family: str, envelope: dict[str, Any], read_body: Callable[[], Body]) -> DecodedCommand:
        return DecodedCommand(
            family=family,
            command_id=envelope["command_id"],
            tenant_id=envelope["tenant_id"],
            action=envelope["action"],
            action_version=envelope["action_version"],
            actor_user_id=envelope["actor"]["user_id"],
            actor_workflow_run_id=envelope["actor"]["workflow_run_id"],
            correlation_id=envelope["correlation_id"],
            reply_to=envelope["reply_to"],
            issued_at=envelope["issued_at"],
            read_body=read_body,
        )

    @staticmethod
    def _body(envelope: dict[str, Any], data: dict[str, Any] | None, error: FieldError | None) -> Body:
        canonical = canonical_json({**envelope, "input": data})
        return Body(input=data, input_error=error, body_hash=hashlib.sha256(canonical.encode()).hexdigest())

    def encode_command(self, command: dict[str, Any], family: str, topic: str) -> bytes:
        """A JSON-form command in the given family (for `send --encoding` and tests)."""
        if family == Family.JSON:
            return json.dumps(command).encode()
        schema = self.schemas.command
        envelope = {k: v for k, v in command.items() if k != "input"}
        record = self._envelope(envelope, "command")
        name = input_record(command["action"])
        record["input"] = (name, schema.converter(name)(command.get("input"), "input"))
        return self._encode_avro(schema, record, family, value_subject(topic))

    # --- replies and events ----------------------------------------------

    def encode_reply(self, reply: dict[str, Any], family: str, topic: str) -> ReplyValues:
        """A reply (JSON form) in the command's family, and the same reply as a duplicate."""
        if family == Family.JSON:
            value = json.dumps(reply, separators=(",", ":")).encode()
            again = value if reply["duplicate"] else json.dumps({**reply, "duplicate": True}, separators=(",", ":")).encode()
            return ReplyValues(value, again)
        schema = self.schemas.result
        record = dict(reply)
        output, error = record.pop("output"), record.pop("error")
        record = self._reply(record, "reply")
        if output is not None:
            name = output_record(reply["action"])
            record["output"] = (name, schema.converter(name)(output, "output"))
        else:
            record["output"] = None
        record["error"] = None if error is None else {**error, "details": None if error.get("details") is None else json.dumps(error["details"])}
        # Written in two stretches to learn where the second, which starts with the duplicate flag,
        # begins: Avro writes a boolean as one byte, 0 or 1, so the duplicate differs by that byte.
        head, tail = self._reply_halves
        buf = self._framed(schema, family, value_subject(topic))
        head.write(buf, record)
        flag = buf.tell()
        tail.write(buf, record)
        value = buf.getvalue()
        if record["duplicate"]:
            return ReplyValues(value, value)
        return ReplyValues(value, value[:flag] + b"\x01" + value[flag + 1 :])

    def encode_event(self, event_type: str, record: dict[str, Any], topic: str) -> bytes:
        schema = self.schemas.event(event_type)
        family = Family.REGISTRY if self.registry is not None else Family.SINGLE_OBJECT
        return self._encode_avro(schema, record, family, record_subject(topic, schema.name))

    def _encode_avro(self, schema: AvroSchema, record: dict[str, Any], family: str, subject: str) -> bytes:
        buf = self._framed(schema, family, subject)
        fastavro.schemaless_writer(buf, schema.parsed, record)
        return buf.getvalue()

    def _framed(self, schema: AvroSchema, family: str, subject: str) -> io.BytesIO:
        """A buffer holding the frame that names the writer schema, for the body to follow."""
        buf = io.BytesIO()
        if family == Family.REGISTRY and self.registry is not None:
            buf.write(REGISTRY_MAGIC + self._schema_id(subject, schema).to_bytes(4, "big"))
        else:
            buf.write(SINGLE_OBJECT_MAGIC + schema.fingerprint)
        return buf

    def _schema_id(self, subject: str, schema: AvroSchema) -> int:
        key = (subject, schema.name)
        if key not in self._id_by_subject:
            registered = Schema(schema.text, "AVRO")
            if self.auto_register:
                self._id_by_subject[key] = _ask_registry(self.registry.register_schema, subject, registered)
            else:
                self._id_by_subject[key] = _ask_registry(self.registry.lookup_schema, subject, registered).schema_id
        return self._id_by_subject[key]

    def decode_event(self, value: bytes) -> tuple[str, dict[str, Any]]:
        """Read an event the service wrote (for `tail` and tests): (record name, record)."""
        if value[:2] == SINGLE_OBJECT_MAGIC:
            writer = self.schemas.by_fingerprint[value[2:10]]
            return writer.name, from_avro(fastavro.schemaless_reader(io.BytesIO(value[10:]), writer.parsed, writer.parsed))
        writer = self._registry_writer(value)
        return writer["name"], from_avro(fastavro.schemaless_reader(io.BytesIO(value[5:]), writer, writer))

    def decode_reply(self, value: bytes) -> dict[str, Any]:
        """A reply as JSON-form dict, whatever its family (for `send`, `tail` and tests)."""
        if value.lstrip()[:1] == b"{":
            return json.loads(value)
        if value[:2] == SINGLE_OBJECT_MAGIC:
            writer = self.schemas.by_fingerprint[value[2:10]].parsed
            body = value[10:]
        else:
            writer, body = self._registry_writer(value), value[5:]
        record = from_avro(fastavro.schemaless_reader(io.BytesIO(body), writer, self.schemas.result.parsed))
        if record.get("error") and record["error"].get("details"):
            record["error"]["details"] = json.loads(record["error"]["details"])
        return to_json(record)
