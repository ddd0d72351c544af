"""Dead letters: the original key and bytes, untouched, with headers that say why."""
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from consumer.messages import Incoming
from handlers.timeutil import iso

DLQ_PREFIX = "dlq."


@dataclass(frozen=True)
class DeadLetter:
    item: Incoming
    error_class: str
    message: str
    attempts: int
    # The ERROR reply to send with it (None when no command_id could be read).
    reply: dict[str, Any] | None
    reply_topic: str
    reply_family: str


def headers(item: Incoming, error_class: str, message: str, attempts: int) -> list[tuple[str, bytes]]:
    ours = {
        "dlq.original.topic": item.topic,
        "dlq.original.partition": str(item.partition),
        "dlq.original.offset": str(item.offset),
        "dlq.original.timestamp": str(item.timestamp_ms),
        "dlq.error.class": error_class,
        "dlq.error.message": message[:4000],
        "dlq.failed.at": iso(datetime.now(timezone.utc)),
        "dlq.attempts": str(attempts),
    }
    original = [(k, v) for k, v in item.headers if not k.startswith(DLQ_PREFIX)]
    return original + [(k, v.encode()) for k, v in ours.items()]


def error_reply(partial: dict[str, Any], code: str, message: str, error_class: str) -> dict[str, Any] | None:
    """The ERROR reply for a dead letter, when its command_id could be read."""
    if not partial.get("command_id"):
        return None
    return {
        "command_id": partial["command_id"],
        "correlation_id": partial.get("correlation_id"),
        "tenant_id": partial.get("tenant_id"),
        "action": partial.get("action"),
        "status": "ERROR",
        "output": None,
        "error": {"code": code, "message": message, "details": {"error_class": error_class, "dead_lettered": True}},
        "duplicate": False,
        "processed_at": iso(datetime.now(timezone.utc)),
    }
