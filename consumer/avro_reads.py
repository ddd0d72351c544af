"""Values fastavro read → the same Python form the JSON path yields: uuid fields as canonical strings."""
import re
import uuid
from collections.abc import Callable
from typing import Any

Fix = Callable[[Any], Any]

# The form str(uuid.UUID(s)) gives: a string already in it needs no UUID built.
CANONICAL_UUID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def from_avro(value: Any) -> Any:
    """Values read with the uuid logical types in the schema: every UUID back to a string."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: from_avro(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_avro(v) for v in value]
    if isinstance(value, tuple):
        # A union branch read with its record name: (name, value).
        return tuple(from_avro(v) for v in value)
    return value


def without_uuids(schema: Any) -> Any:
    """A schema (JSON form) whose uuid logical types are dropped: the same bytes, read as plain strings."""
    if isinstance(schema, dict):
        return {k: without_uuids(v) for k, v in schema.items() if not (k == "logicalType" and v == "uuid")}
    if isinstance(schema, list):
        return [without_uuids(s) for s in schema]
    return schema


class Unsupported(Exception):
    """A schema shape uuid_fixer does not follow: its values are read the general way."""


def uuid_fixer(schema: Any, named: dict[str, Any]) -> Fix:
    """For a record read with `without_uuids(schema)` as both writer and reader schema (and
    return_record_name_override): put each uuid string in the form fastavro's UUID and then
    from_avro would, raising the same ValueError for one that is no UUID. Changes the record in place."""
    fix = _fixer(schema, named, set())
    return fix if fix is not None else _same


def _same(value: Any) -> Any:
    return value


def _uuid(value: str) -> str:
    return value if CANONICAL_UUID.fullmatch(value) else str(uuid.UUID(value))


def _fixer(schema: Any, named: dict[str, Any], seen: set[str]) -> Fix | None:
    """None when no uuid is inside."""
    if isinstance(schema, str):
        return _fixer(named[schema], named, seen) if schema in named else None
    if isinstance(schema, list):
        return _union(schema, named, seen)
    kind = schema["type"]
    if schema.get("logicalType") == "uuid":
        if kind != "string":
            raise Unsupported(f"uuid on {kind}")
        return _uuid
    if kind == "record":
        name = schema["name"]
        if name in seen:
            raise Unsupported(f"{name} contains itself")
        return _record(schema, named, seen | {name})
    if kind == "array":
        item = _fixer(schema["items"], named, seen)
        return None if item is None else _array(item)
    if kind == "map":
        if _fixer(schema["values"], named, seen) is not None:
            raise Unsupported("uuid in a map")
        return None
    if isinstance(kind, (dict, list)) or kind in named:
        return _fixer(kind, named, seen)
    return None


def _record(schema: dict[str, Any], named: dict[str, Any], seen: set[str]) -> Fix | None:
    fields = [(f["name"], fix) for f in schema["fields"] if (fix := _fixer(f["type"], named, seen)) is not None]
    if not fields:
        return None

    def record(value: dict[str, Any]) -> dict[str, Any]:
        for name, fix in fields:
            value[name] = fix(value[name])
        return value

    return record


def _array(item: Fix) -> Fix:
    def array(value: list[Any]) -> list[Any]:
        return [item(v) for v in value]

    return array


def _resolved(schema: Any, named: dict[str, Any]) -> Any:
    return named[schema] if isinstance(schema, str) and schema in named else schema


def _union(branches: list[Any], named: dict[str, Any], seen: set[str]) -> Fix | None:
    others = [b for b in branches if b != "null"]
    fixes = [_fixer(b, named, seen) for b in others]
    if all(f is None for f in fixes):
        return None
    if len(others) == 1:
        only = fixes[0]
        return lambda value: None if value is None else only(value)
    resolved = [_resolved(b, named) for b in others]
    if not all(isinstance(b, dict) and b["type"] == "record" for b in resolved):
        raise Unsupported("a union of records and other types")
    # More than one record: fastavro reads the branch as (record name, record).
    by_name = {b["name"]: f for b, f in zip(resolved, fixes, strict=True) if f is not None}

    def union(value: Any) -> Any:
        if value is not None and value[0] in by_name:
            return (value[0], by_name[value[0]](value[1]))
        return value

    return union
