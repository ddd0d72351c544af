"""The project's Avro schemas, parsed once: by record name and by single-object fingerprint."""
import io
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from consumer.avro_reads import Fix, uuid_fixer, without_uuids
from consumer.avro_values import Converter, converter

from schemas import AVRO_DIR

COMMAND = "psa.scheduling.SchedulingCommand"
RESULT = "psa.scheduling.SchedulingCommandResult"
NAMESPACE = "psa.scheduling"
EVENT_NAMESPACE = "psa.scheduling.events"
RELEASED = "released"


@dataclass(frozen=True)
class Fields:
    """Consecutive fields of a record, read as a record of their own: Avro writes a record's fields
    one after another, so a value's fields can be read a stretch at a time."""

    parsed: Any
    uuid_free: Any
    uuid_fix: Fix

    def read(self, fo: io.BytesIO) -> dict[str, Any]:
        """The fields from where `fo` stands, leaving it where the next field starts."""
        plain = fastavro.schemaless_reader(fo, self.uuid_free, None, return_record_name=True, return_record_name_override=True)
        return self.uuid_fix(plain)

    def write(self, fo: io.BytesIO, record: dict[str, Any]) -> None:
        """These fields of `record` (its others are left out), where `fo` stands."""
        fastavro.schemaless_writer(fo, self.parsed, record)


@dataclass(frozen=True)
class AvroSchema:
    name: str
    text: str
    parsed: Any
    # Every named type inside the schema, by full name.
    named: dict[str, Any]

    @cached_property
    def fingerprint(self) -> bytes:
        """CRC-64-AVRO of the parsing canonical form, as single-object encoding writes it."""
        return bytes.fromhex(fingerprint(to_parsing_canonical_form(self.parsed), "CRC-64-AVRO"))

    def split(self, at: str) -> tuple[Fields, Fields]:
        """The fields before `at`, and `at` and the fields after it, each a record of its own."""
        schema = json.loads(self.text)
        cut = [f["name"] for f in schema["fields"]].index(at)
        parts = []
        for suffix, fields in (("Head", schema["fields"][:cut]), ("Rest", schema["fields"][cut:])):
            part = {**schema, "name": schema["name"] + suffix, "fields": fields}
            named: dict[str, Any] = {}
            parsed = fastavro.parse_schema(part, named_schemas=named)
            parts.append(Fields(parsed, fastavro.parse_schema(without_uuids(part)), uuid_fixer(parsed, named)))
        return parts[0], parts[1]

    @cached_property
    def _converters(self) -> dict[tuple[str, tuple[str, ...]], Converter]:
        return {}

    def converter(self, record: str, without: tuple[str, ...] = ()) -> Converter:
        """JSON form → fastavro form for one named record of this schema, less some of its fields;
        compiled on first use, as interpreting the schema for every value costs more than the value."""
        key = (record, without)
        found = self._converters.get(key)
        if found is None:
            schema = self.named[record]
            if without:
                schema = {**schema, "fields": [f for f in schema["fields"] if f["name"] not in without]}
            found = self._converters[key] = converter(schema, self.named)
        return found


def _load(path: Path) -> AvroSchema:
    text = path.read_text()
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(json.loads(text), named_schemas=named)
    return AvroSchema(name=parsed["name"], text=text, parsed=parsed, named=named)


def released_dirs(folder: Path = AVRO_DIR) -> list[Path]:
    """`released/<version>/`: the schemas as each release shipped them, oldest first."""
    root = folder / RELEASED
    return sorted((d for d in root.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)) if root.is_dir() else []


class SchemaSet:
    """All `.avsc` files of a folder, plus the writers of every earlier release."""

    def __init__(self, folder: Path = AVRO_DIR) -> None:
        loaded = [_load(p) for p in sorted(folder.glob("*.avsc"))]
        self.by_name = {s.name: s for s in loaded}
        # Single-object values name their writer only by fingerprint, and producers may still
        # write with a schema of an earlier release: resolve those against the current reader.
        older = [_load(p) for d in released_dirs(folder) for p in sorted(d.glob("*.avsc"))]
        self.by_fingerprint = {s.fingerprint: s for s in [*older, *loaded]}
        self._by_event_type: dict[str, AvroSchema] = {}

    def __getitem__(self, name: str) -> AvroSchema:
        return self.by_name[name]

    @property
    def command(self) -> AvroSchema:
        return self.by_name[COMMAND]

    @property
    def result(self) -> AvroSchema:
        return self.by_name[RESULT]

    @property
    def events(self) -> list[AvroSchema]:
        return [s for name, s in self.by_name.items() if name.startswith(f"{EVENT_NAMESPACE}.")]

    def event(self, event_type: str) -> AvroSchema:
        """APPOINTMENT_NO_SHOW → psa.scheduling.events.AppointmentNoShow."""
        found = self._by_event_type.get(event_type)
        if found is None:
            stem = "".join(p.capitalize() for p in event_type.lower().split("_"))
            found = self._by_event_type[event_type] = self.by_name[f"{EVENT_NAMESPACE}.{stem}"]
        return found
