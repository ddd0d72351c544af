"""Instants on the wire: UTC, ISO-8601 with milliseconds and a Z."""
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    # Formatted by hand: half the time of isoformat() and its suffix replaced, and it runs for
    # every instant of every reply, event and audit row.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond // 1000,
    )  # fmt: skip


def to_millis(value: datetime) -> int:
    return (value - EPOCH) // _MS


def from_millis(ms: int) -> datetime:
    return EPOCH + ms * _MS
