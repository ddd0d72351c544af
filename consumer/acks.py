"""Delivery reports of messages produced together, checked once after a flush."""
from typing import Any

from confluent_kafka import Producer


class Acks:
    """The `on_delivery` callback of a group of messages; `unacknowledged` flushes and says what failed."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))

    def unacknowledged(self, producer: Producer, what: str, timeout: float = 30) -> str | None:
        """None once the broker acknowledged every message; else one line for the error to raise."""
        remaining = producer.flush(timeout)
        if remaining or self.failures:
            return f"{len(self.failures) or remaining} {what} not acknowledged by the broker: {self.failures[:3]}"
        return None
