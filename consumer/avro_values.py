"""JSON values ⇄ the values fastavro reads and writes, checked against an Avro schema.

JSON commands are converted field by field so that an error names the exact
path (`input.window.start`), and the same schema rules bind JSON and Avro.
"""
import json
import uuid
from datetime import datetime, timezone
from typing import Any

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
    if not isinstance(value, str):
        raise FieldError(path, "must be an ISO-8601 instant string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(path, f"not an ISO-8601 instant: {value!r}") from None
    if parsed.tzinfo is None:
        raise FieldError(path, f"instant needs a UTC offset: {value!r}")
    return parsed.astimezone(timezone.utc)


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return schema.get("logicalType") or schema.get("name") or schema["type"]
    if isinstance(schema, list):
        return " | ".join(_type_name(s) for s in schema)
    return str(schema)


def from_json(schema: Any, value: Any, named: dict[str, Any], path: str) -> Any:
    """Convert and check one JSON value; records get their defaults filled in."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return _union(schema, value, named, path)
    if isinstance(schema, dict):
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical == "timestamp-millis":
            return parse_instant(value, path)
        if logical == "uuid":
            if not isinstance(value, str):
                raise FieldError(path, "must be a UUID string")
            try:
                return str(uuid.UUID(value))
            except ValueError:
                raise FieldError(path, f"not a UUID: {value!r}") from None
        if kind == "record":
            return _record(schema, value, named, path)
        if kind == "enum":
            if value not in schema["symbols"]:
                raise FieldError(path, f"must be one of {', '.join(schema['symbols'])}; got {value!r}")
            return value
        if kind == "array":
            if not isinstance(value, list):
                raise FieldError(path, "must be an array")
            return [from_json(schema["items"], v, named, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(kind, (str, dict, list)) and kind not in ("record", "enum", "array", "map"):
            return from_json(kind, value, named, path)
        raise FieldError(path, f"unsupported schema type {kind}")
    if schema == "null":
        if value is not None:
            raise FieldError(path, "must be null")
        return None
    expected = _PRIMITIVE_JSON[schema]
    if not isinstance(value, expected) or (schema != "boolean" and isinstance(value, bool)):
        raise FieldError(path, f"must be of type {schema}; got {type(value).__name__}")
    return value


def _union(branches: list[Any], value: Any, named: dict[str, Any], path: str) -> Any:
    if value is None:
        if "null" in branches:
            return None
        raise FieldError(path, "is required")
    errors = []
    for branch in branches:
        if branch == "null":
            continue
        try:
            return from_json(branch, value, named, path)
        except FieldError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    raise FieldError(path, f"matches none of {_type_name([b for b in branches if b != 'null'])}")


def _record(schema: dict[str, Any], value: Any, named: dict[str, Any], path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(path, "must be an object")
    known = {f["name"] for f in schema["fields"]}
    unknown = sorted(set(value) - known)
    if unknown:
        raise FieldError(f"{path}.{unknown[0]}", "unknown field")
    out = {}
    for f in schema["fields"]:
        name = f["name"]
        raw = value.get(name, _MISSING)
        if raw is _MISSING:
            if "default" not in f:
                raise FieldError(f"{path}.{name}", "is required")
            raw = f["default"]
            if raw is None:
                out[name] = None
                continue
        out[name] = from_json(f["type"], raw, named, f"{path}.{name}")
    return out


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


def from_avro(value: Any) -> Any:
    """Values fastavro read → the same Python form the JSON path yields."""
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
