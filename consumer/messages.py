"""What the poll loop hands to the processor and gets back: plain data, no Kafka objects."""
from dataclasses import dataclass
from typing import Any

from consumer.codecs import DecodedCommand


# Where a message was read: (topic, partition, offset).
Position = tuple[str, int, int]


@dataclass(frozen=True)
class Incoming:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    command: DecodedCommand | None = None

    @classmethod
    def of(cls, message: Any, command: DecodedCommand | None = None) -> "Incoming":
        """From a confluent_kafka Message: its coordinates, key, value and headers."""
        return cls(
            message.topic(), message.partition(), message.offset(), message.timestamp()[1],
            message.key(), message.value(), tuple(message.headers() or ()), command,
        )  # fmt: skip

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name and v is not None:
                return v.decode("utf-8", "replace")
        return None


class Outcome:
    APPLIED = "applied"
    REJECTED = "rejected"  # a domain error, recorded and answered
    DUPLICATE = "duplicate"
    FAILED = "failed"  # unexpected error after its attempts: dead-lettered


@dataclass
class Result:
    incoming: Incoming
    outcome: str
    # The reply in JSON form; for duplicates the loop produces it directly.
    reply: dict[str, Any] | None = None
    error: BaseException | None = None
    attempts: int = 1
    # A duplicate whose command_id came again with a different body.
    reused_id: bool = False
    # A duplicate's reply as the inbox kept it encoded, sent as is; None: encode `reply`.
    reply_value: bytes | None = None
