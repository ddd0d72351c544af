"""Golden samples: values recorded with every released schema (Avro JSON encoding, next to
the release), written with that release's schema, must decode with the current one."""
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from consumer.avro_schemas import AvroSchema, SchemaSet, released_dirs
from consumer.codecs import REGISTRY_MAGIC, SINGLE_OBJECT_MAGIC, Codec, value_subject
from handlers.registry import ACTIONS

RELEASES = released_dirs()
CURRENT = SchemaSet()


def samples(release: Path, schema_file: Path, writer: AvroSchema) -> list[dict[str, Any]]:
    path = release / "samples" / f"{schema_file.stem}.jsonl"
    assert path.exists(), f"{path} is missing: every released schema keeps samples"
    with path.open() as fo:
        records = list(fastavro.json_reader(fo, writer.parsed))
    # The JSON names the branch of a union of records; keep it, so the writer does not have to guess.
    for record, raw in zip(records, map(json.loads, path.read_text().splitlines()), strict=True):
        for name, value in raw.items():
            if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in writer.named:
                record[name] = (next(iter(value)), record[name])
    return records


def single_object(writer: AvroSchema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + writer.fingerprint)
    fastavro.schemaless_writer(buf, writer.parsed, record)
    return buf.getvalue()


def branches(schema: AvroSchema, field: str) -> set[str]:
    union = next(f["type"] for f in schema.parsed["fields"] if f["name"] == field)
    return {b if isinstance(b, str) else b["name"] for b in union} - {"null"}


def test_there_is_a_release_and_each_keeps_every_schema():
    assert RELEASES, "schemas/avro/released/ holds no release"
    for release in RELEASES:
        assert {p.name for p in release.glob("*.avsc")}, release


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: f"release-{r.name}")
def test_commands_of_every_release_decode_in_both_framings(release: Path):
    old = SchemaSet(release)
    records = samples(release, release / "scheduling_command.avsc", old.command)
    assert {name for name, _ in (r["input"] for r in records)} == branches(old.command, "input"), "a sample per action"
    registry = SchemaRegistryClient.new_client({"url": "mock://golden"})
    schema_id = registry.register_schema(value_subject("commands"), Schema(old.command.text, "AVRO"))
    codec = Codec(CURRENT, frozenset(ACTIONS), registry)
    for record in records:
        body = single_object(old.command, record)
        framed = REGISTRY_MAGIC + schema_id.to_bytes(4, "big") + body[10:]
        for value in (body, framed):
            decoded = codec.decode_command(value)
            assert decoded.input_error is None, decoded.input_error
            assert (decoded.command_id, decoded.action) == (str(record["command_id"]), record["action"])
            assert decoded.input is not None


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: f"release-{r.name}")
def test_replies_of_every_release_decode(release: Path):
    old = SchemaSet(release)
    records = samples(release, release / "scheduling_command_result.avsc", old.result)
    written = {r["output"][0] for r in records if r["output"]}
    assert written == branches(old.result, "output") and any(r["error"] for r in records), "a sample per output, and an error"
    codec = Codec(CURRENT, frozenset(ACTIONS))
    for record in records:
        reply = codec.decode_reply(single_object(old.result, record))
        assert (reply["command_id"], reply["status"]) == (str(record["command_id"]), record["status"])
        assert (reply["error"] is None) == (record["error"] is None)


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: f"release-{r.name}")
def test_events_of_every_release_decode_with_the_current_schema(release: Path):
    old = SchemaSet(release)
    assert {s.name for s in old.events} <= set(CURRENT.by_name), "an event schema was dropped"
    for path in sorted(release.glob("appointment_*.avsc")):
        writer = next(s for s in old.events if s.text == path.read_text())
        reader = CURRENT[writer.name]
        for record in samples(release, path, writer):
            body = single_object(writer, record)[10:]
            decoded = fastavro.schemaless_reader(io.BytesIO(body), writer.parsed, reader.parsed)
            assert (decoded["id"], decoded["eventType"]) == (record["id"], record["eventType"])
            assert decoded["payload"]["tenantId"] == record["payload"]["tenantId"]
