"""What the poll loop's Kafka consumer is doing, seen from outside its thread.

The consumer reports its own polls, pauses, rebalances and librdkafka
statistics, so liveness, readiness, /status and the lag metrics need no
cooperation from the loop's code beyond constructing it through `watched_consumer`.
"""
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

# How often librdkafka reports offsets, lag and group state; KAFKA_STATISTICS_INTERVAL_MS overrides it.
STATISTICS_INTERVAL_MS = 5000


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    position: int | None  # the next offset the loop will be handed
    committed: int | None
    end: int | None  # the partition's high watermark
    lag: int | None
    paused: bool


def _offset(value: Any) -> int | None:
    # librdkafka marks an unknown offset with a negative sentinel (-1001).
    return value if isinstance(value, int) and value >= 0 else None


class LoopWatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_poll = time.monotonic()
        self._batch_since: float | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._paused: set[tuple[str, int]] = set()
        self._partition_stats: dict[tuple[str, int], dict[str, Any]] = {}
        self.group_state: dict[str, Any] = {}
        self.stats_at: float | None = None
        self.rebalances: Counter[str] = Counter()

    # --- reported by the consumer -------------------------------------------

    def polling(self, next_batch: bool = False) -> None:
        """A poll starts; the loop asking for its next batch has finished the one in hand."""
        self.last_poll = time.monotonic()
        if next_batch:
            self._batch_since = None

    def polled(self, batch_size: int = 0) -> None:
        now = time.monotonic()
        self.last_poll = now
        if batch_size:
            self._batch_since = now

    def assigned(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._assigned |= {(p.topic, p.partition) for p in partitions}
            self.rebalances["assigned"] += 1

    def revoked(self, partitions: list[TopicPartition], kind: str) -> None:
        with self._lock:
            gone = {(p.topic, p.partition) for p in partitions}
            self._assigned -= gone
            self._paused -= gone
            self.rebalances[kind] += 1

    def paused(self, partitions: list[TopicPartition], paused: bool) -> None:
        with self._lock:
            keys = {(p.topic, p.partition) for p in partitions}
            self._paused = self._paused | keys if paused else self._paused - keys

    def statistics(self, raw: str) -> None:
        stats = json.loads(raw)
        partitions = {
            (topic, int(pid)): part
            for topic, t in stats.get("topics", {}).items()
            for pid, part in t.get("partitions", {}).items()
            if int(pid) >= 0
        }
        with self._lock:
            self._partition_stats = partitions
            self.group_state = stats.get("cgrp", {})
            self.stats_at = time.time()

    # --- read by the endpoints and the metrics --------------------------------

    def seconds_since_poll(self) -> float:
        return time.monotonic() - self.last_poll

    def batch_seconds(self) -> float | None:
        """How long the batch in hand has been worked on (None between batches)."""
        since = self._batch_since
        return None if since is None else time.monotonic() - since

    def assignment(self) -> set[tuple[str, int]]:
        with self._lock:
            return set(self._assigned)

    def joined(self) -> bool:
        """The group has settled this member, with or without partitions for it."""
        state = self.group_state
        return state.get("state") == "up" and state.get("join_state") == "steady"

    def partitions(self) -> list[PartitionState]:
        with self._lock:
            assigned, paused, stats = set(self._assigned), set(self._paused), dict(self._partition_stats)
        states = []
        for topic, partition in sorted(assigned):
            part = stats.get((topic, partition), {})
            committed, end = _offset(part.get("committed_offset")), _offset(part.get("hi_offset"))
            # Nothing committed yet: the group starts from the log start (auto.offset.reset=earliest).
            base = committed if committed is not None else _offset(part.get("lo_offset"))
            lag = max(0, end - base) if end is not None and base is not None else None
            states.append(
                PartitionState(
                    topic, partition, _offset(part.get("app_offset")), committed, end, lag, (topic, partition) in paused
                )
            )
        return states


class WatchedConsumer(Consumer):
    """A Consumer that tells a LoopWatch about its polls, pauses and rebalances."""

    watch: LoopWatch

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self.watch.polling(next_batch=True)
        messages = super().consume(num_messages, timeout)
        self.watch.polled(len(messages))
        return messages

    def consume_more(self, num_messages: int, timeout: float = 0) -> list[Message]:
        """More messages for the batch in hand (it keeps its start time)."""
        self.watch.polling()
        messages = super().consume(num_messages, timeout)
        self.watch.polled()
        return messages

    def poll(self, timeout: float = -1) -> Message | None:
        self.watch.polling()
        message = super().poll(timeout)
        self.watch.polled()
        return message

    def pause(self, partitions: list[TopicPartition]) -> None:
        super().pause(partitions)
        self.watch.paused(partitions, True)

    def resume(self, partitions: list[TopicPartition]) -> None:
        super().resume(partitions)
        self.watch.paused(partitions, False)

    def subscribe(self, topics: list[str], on_assign: Callable | None = None, on_revoke: Callable | None = None, **kwargs: Any) -> None:
        watch = self.watch

        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            watch.assigned(partitions)
            if on_assign is not None:
                on_assign(consumer, partitions)

        def revoked(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            watch.revoked(partitions, "revoked")
            if on_revoke is not None:
                on_revoke(consumer, partitions)

        if kwargs.get("on_lost") is not None:
            on_lost = kwargs["on_lost"]

            def lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
                watch.revoked(partitions, "lost")
                on_lost(consumer, partitions)

            kwargs["on_lost"] = lost
        super().subscribe(topics, on_assign=assigned, on_revoke=revoked, **kwargs)


def watched_consumer(conf: dict[str, Any], watch: LoopWatch) -> WatchedConsumer:
    consumer = WatchedConsumer({"statistics.interval.ms": STATISTICS_INTERVAL_MS, **conf, "stats_cb": watch.statistics})
    consumer.watch = watch
    return consumer
