"""Instants on the wire: UTC, ISO-8601 with milliseconds and a Z."""
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_millis(value: datetime) -> int:
    return (value - EPOCH) // _MS


def from_millis(ms: int) -> datetime:
    return EPOCH + ms * _MS
