"""Input rules beyond what the Avro schema already enforces (types, enums, UUIDs)."""
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from handlers.errors import ValidationError


def invalid(path: str, message: str, **details: Any) -> ValidationError:
    return ValidationError(f"{path}: {message}", {"path": path, **details})


def window(value: dict[str, Any], path: str = "input.window") -> tuple[datetime, datetime]:
    start, end = value["start"], value["end"]
    if not start < end:
        raise invalid(path, "window.start must be before window.end")
    return start, end


def text(value: str | None, path: str) -> str | None:
    """Optional free text: trimmed; present but blank is an error."""
    if value is None:
        return None
    trimmed = value.strip()
    if not trimmed:
        raise invalid(path, "must not be blank")
    return trimmed


def unique_ids(values: Sequence[str], path: str, *, min_items: int = 1) -> list[str]:
    if len(values) < min_items:
        raise invalid(path, f"must contain at least {min_items} user id")
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise invalid(path, f"{path.rsplit('.', 1)[-1]} must be unique", duplicate=v)
        seen.add(v)
    return list(values)
