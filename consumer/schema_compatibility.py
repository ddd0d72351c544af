"""`schemas check`: the working tree's schemas must read every record any release wrote
(BACKWARD compatibility, against every recorded release — what the registry calls transitive).

Apache Avro's own checker gives the verdict; it reports a change inside a union branch only as
"reader union lacking writer type", so the explanation checks each named type on its own.
"""
import difflib
from dataclasses import dataclass
from pathlib import Path

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType, lookup_writer_field
from avro.errors import AvroException
from avro.schema import ArraySchema, EnumSchema, FixedSchema, MapSchema, NamedSchema, RecordSchema, Schema, UnionSchema

from consumer.avro_schemas import RELEASED, released_dirs
from consumer.config import ConfigError
from schemas import AVRO_DIR


@dataclass(frozen=True)
class Finding:
    """One schema that cannot read what a release wrote: why, and what changed."""

    headline: str
    reasons: list[str]
    diff: str = ""

    def __str__(self) -> str:
        return "\n".join([self.headline, *(f"  - {r}" for r in self.reasons), *([self.diff.rstrip("\n")] if self.diff else [])])


def check(folder: Path = AVRO_DIR) -> list[Finding]:
    """Every incompatibility between the schemas in `folder` and those of its released versions."""
    releases = released_dirs(folder)
    if not releases:
        raise ConfigError(f"no released schemas under {folder / RELEASED} (record the first release there)")
    findings: list[Finding] = []
    current: dict[str, tuple[Path, Schema]] = {}
    for path in sorted(folder.glob("*.avsc")):
        try:
            schema = _parse(path)
        except AvroException as e:
            findings.append(Finding(f"{path.name}: not a valid Avro schema", [str(e)]))
            continue
        current[getattr(schema, "fullname", path.name)] = (path, schema)
    for release in releases:
        for old_path in sorted(release.glob("*.avsc")):
            old = _parse(old_path)
            label = f"released/{release.name}/{old_path.name}"
            if old.fullname not in current:
                findings.append(Finding(f"{old.fullname} ({label}) is gone", [f"records release {release.name} wrote with it can no longer be read"]))
                continue
            path, new = current[old.fullname]
            if _compatible(new, old):
                continue
            diff = "".join(difflib.unified_diff(
                old_path.read_text().splitlines(keepends=True), path.read_text().splitlines(keepends=True),
                fromfile=label, tofile=path.name,
            ))  # fmt: skip
            findings.append(Finding(f"{path.name} ({old.fullname}) cannot read what release {release.name} wrote:", _reasons(new, old), diff))
    return findings


def _parse(path: Path) -> Schema:
    return avro.schema.parse(path.read_text())


def _compatible(reader: Schema, writer: Schema) -> bool:
    verdict = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    return verdict.compatibility is SchemaCompatibilityType.compatible


def _named(schema: Schema, found: dict[str, NamedSchema] | None = None) -> dict[str, NamedSchema]:
    """Every named type reachable from `schema`, by full name."""
    found = {} if found is None else found
    if isinstance(schema, NamedSchema):
        if schema.fullname in found:
            return found
        found[schema.fullname] = schema
    if isinstance(schema, RecordSchema):
        for f in schema.fields:
            _named(f.type, found)
    elif isinstance(schema, UnionSchema):
        for branch in schema.schemas:
            _named(branch, found)
    elif isinstance(schema, ArraySchema):
        _named(schema.items, found)
    elif isinstance(schema, MapSchema):
        _named(schema.values, found)
    return found


def _reasons(reader: Schema, writer: Schema) -> list[str]:
    """One line per change that breaks reading old records, attributed to the named type it is in."""
    readers, writers = _named(reader), _named(writer)
    broken = {name for name in readers.keys() & writers.keys() if not _compatible(readers[name], writers[name])}
    reasons = []
    for name in sorted(broken):
        new, old = readers[name], writers[name]
        if isinstance(new, RecordSchema) and isinstance(old, RecordSchema):
            for f in new.fields:
                was = lookup_writer_field(writer_schema=old, reader_field=f)
                if was is None:
                    if not f.has_default:
                        reasons.append(f"{name}.{f.name}: new field without a default; records written before it have no value for it")
                elif not _compatible(f.type, was.type) and not (_named(f.type).keys() & broken):
                    reasons.append(f"{name}.{f.name}: written as {_describe(was.type)}, cannot be read as {_describe(f.type)}")
        elif isinstance(new, EnumSchema) and isinstance(old, EnumSchema):
            removed = [s for s in old.symbols if s not in new.symbols]
            reasons.append(f"{name}: symbol(s) {', '.join(removed)} removed, and no enum default to read them as")
        elif isinstance(new, FixedSchema) and isinstance(old, FixedSchema):
            reasons.append(f"{name}: fixed size {old.size} changed to {new.size}")
        else:
            reasons.append(f"{name}: was {_describe(old)}, now {_describe(new)}")
    if not reasons:  # a break outside any shared named type (e.g. the top-level type renamed)
        verdict = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
        reasons = [f"{'; '.join(sorted(verdict.messages))} (at {', '.join(sorted(verdict.locations))})"]
    return reasons


def _describe(schema: Schema) -> str:
    if isinstance(schema, NamedSchema):
        return f"{schema.type} {schema.fullname}"
    if isinstance(schema, UnionSchema):
        return " | ".join(_describe(s) for s in schema.schemas)
    if isinstance(schema, ArraySchema):
        return f"array of {_describe(schema.items)}"
    if isinstance(schema, MapSchema):
        return f"map of {_describe(schema.values)}"
    return str(schema.type)
