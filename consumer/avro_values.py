"""JSON values ⇄ the values fastavro reads and writes, checked against an Avro schema.

JSON commands are converted field by field so that an error names the exact
path (`input.window.start`), and the same schema rules bind JSON and Avro.
"""
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from consumer.avro_reads import CANONICAL_UUID
from handlers.timeutil import iso

_PRIMITIVE_JSON = {
    "string": (str,),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
}
_MISSING = object()


class FieldError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message


def parse_instant(value: Any, path: str) -> datetime:
    try:
        return _instant(value)
    except _Mismatch as e:
        raise FieldError(path, e.reason) from None


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return schema.get("logicalType") or schema.get("name") or schema["type"]
    if isinstance(schema, list):
        return " | ".join(_type_name(s) for s in schema)
    return str(schema)


Converter = Callable[[Any, str], Any]
_Convert = Callable[[Any], Any]


class _Mismatch(Exception):
    """A value that breaks the schema; `suffix` is its path below the converter that was called,
    filled in while the error travels up, so that values that fit never build a path."""

    def __init__(self, reason: str, suffix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.suffix = suffix


def converter(schema: Any, named: dict[str, Any]) -> Converter:
    """Compile a schema once into `convert(value, path)`: one JSON value converted and checked,
    records with their defaults filled in; errors are FieldErrors naming the exact path."""
    convert = _compile(schema, named, {})

    def run(value: Any, path: str) -> Any:
        try:
            return convert(value)
        except _Mismatch as e:
            raise FieldError(path + e.suffix, e.reason) from None

    return run


def _compile(schema: Any, named: dict[str, Any], done: dict[int, _Convert]) -> _Convert:
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if id(schema) in done:
        return done[id(schema)]
    if isinstance(schema, list):
        return _union(schema, named, done)
    if isinstance(schema, dict):
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical == "timestamp-millis":
            return _instant
        if logical == "uuid":
            return _uuid
        if kind == "record":
            return _record(schema, named, done)
        if kind == "enum":
            return _enum(schema["symbols"])
        if kind == "array":
            return _array(_compile(schema["items"], named, done))
        if isinstance(kind, (str, dict, list)) and kind not in ("record", "enum", "array", "map"):
            return _compile(kind, named, done)
        return _failing(lambda: _Mismatch(f"unsupported schema type {kind}"))
    if schema == "null":
        return _null
    if schema not in _PRIMITIVE_JSON:
        return _failing(lambda: KeyError(schema))
    return _primitive(schema)


def _failing(error: Callable[[], Exception]) -> _Convert:
    # Raised when a value reaches the type, not when the schema is compiled: a branch
    # no value takes must not stop the others from converting.
    def fail(value: Any) -> Any:
        raise error()

    return fail


def _null(value: Any) -> None:
    if value is not None:
        raise _Mismatch("must be null")
    return None


def _primitive(name: str) -> _Convert:
    expected = _PRIMITIVE_JSON[name]
    if name == "boolean":

        def boolean(value: Any) -> Any:
            if value is True or value is False:
                return value
            raise _Mismatch(f"must be of type boolean; got {type(value).__name__}")

        return boolean
    # Exact classes skip the isinstance checks; subclasses other than bool are still let through.
    exact = frozenset(expected)

    def check(value: Any) -> Any:
        if value.__class__ in exact or (isinstance(value, expected) and not isinstance(value, bool)):
            return value
        raise _Mismatch(f"must be of type {name}; got {type(value).__name__}")

    return check


def _instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _Mismatch("must be an ISO-8601 instant string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Mismatch(f"not an ISO-8601 instant: {value!r}") from None
    if parsed.tzinfo is None:
        raise _Mismatch(f"instant needs a UTC offset: {value!r}")
    return parsed.astimezone(timezone.utc)


def _uuid(value: Any) -> str:
    if value.__class__ is str and CANONICAL_UUID.fullmatch(value):
        return value
    if not isinstance(value, str):
        raise _Mismatch("must be a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _Mismatch(f"not a UUID: {value!r}") from None


def _enum(symbols: list[str]) -> _Convert:
    allowed = tuple(symbols)
    listed = ", ".join(symbols)

    def enum(value: Any) -> Any:
        if value not in allowed:
            raise _Mismatch(f"must be one of {listed}; got {value!r}")
        return value

    return enum


def _array(item: _Convert) -> _Convert:
    def array(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _Mismatch("must be an array")
        out: list[Any] = []
        for v in value:
            try:
                out.append(item(v))
            except _Mismatch as e:
                e.suffix = f"[{len(out)}]{e.suffix}"
                raise
        return out

    return array


def _union(branches: list[Any], named: dict[str, Any], done: dict[int, _Convert]) -> _Convert:
    nullable = "null" in branches
    others = [b for b in branches if b != "null"]
    converts = [_compile(b, named, done) for b in others]
    if len(converts) == 1:
        only = converts[0]

        def single(value: Any) -> Any:
            if value is None:
                if nullable:
                    return None
                raise _Mismatch("is required")
            return only(value)

        return single
    none_of = f"matches none of {_type_name(others)}"

    def union(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise _Mismatch("is required")
        errors = []
        for convert in converts:
            try:
                return convert(value)
            except _Mismatch as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise _Mismatch(none_of)

    return union


_REQUIRED = object()
_SCALARS = (str, int, float, bool)


def _record(schema: dict[str, Any], named: dict[str, Any], done: dict[int, _Convert]) -> _Convert:
    fields: list[tuple[str, _Convert, Any, bool]] = []

    def record(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Mismatch("must be an object")
        if not known.issuperset(value):
            raise _Mismatch("unknown field", f".{sorted(set(value) - known)[0]}")
        out = {}
        for name, convert, default, ready in fields:
            raw = value.get(name, _MISSING)
            if raw is _MISSING:
                if ready:
                    out[name] = default
                    continue
                if default is _REQUIRED:
                    raise _Mismatch("is required", f".{name}")
                raw = default
            try:
                out[name] = convert(raw)
            except _Mismatch as e:
                e.suffix = f".{name}{e.suffix}"
                raise
        return out

    # Registered before its fields compile, so that a record that contains itself finds itself.
    done[id(schema)] = record
    for f in schema["fields"]:
        convert = _compile(f["type"], named, done)
        fields.append((f["name"], convert, *_prepared(convert, f.get("default", _REQUIRED))))
    known = frozenset(f["name"] for f in schema["fields"])
    return record


def _prepared(convert: _Convert, default: Any) -> tuple[Any, bool]:
    """(default, ready): a null default, or a scalar one that converts, is filled in without converting."""
    if default is None:
        return None, True
    if default is not _REQUIRED and type(default) in _SCALARS:
        try:
            return convert(default), True
        except Exception:  # noqa: BLE001 - converted, and so raised, whenever the field is missing
            return default, False
    return default, False


def to_json(value: Any) -> Any:
    """Python values → JSON values: instants as ISO-8601 UTC strings, UUIDs as strings."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _jsonable(value: Any) -> str:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Serialises exactly like json.dumps(to_json(value), sort_keys=True, separators=(",", ":")),
# without first copying the whole value: stored body hashes depend on every byte.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_jsonable)


def canonical_json(value: Any) -> str:
    """The one JSON text of a Python-form value that body hashes are taken of."""
    return _CANONICAL.encode(value)
