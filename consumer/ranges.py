"""Stretches of a topic read outside any consumer group: positions, bounds and the records between them."""
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from consumer.avro_values import FieldError, parse_instant
from consumer.config import ConfigError, Settings
from handlers.timeutil import to_millis

# Give up reading a range when the broker sends nothing for this long.
STALL_TIMEOUT_S = 30.0


def parse_time(text: str, flag: str) -> datetime:
    """An ISO-8601 instant with a UTC offset (or `now`), as an operator types it."""
    if text == "now":
        return datetime.now(timezone.utc)
    try:
        return parse_instant(text, flag)
    except FieldError as e:
        raise ConfigError(f"{flag}: {e.reason} (for example 2027-03-01T10:00:00Z)") from None


def parse_offsets(specs: list[str], flag: str) -> dict[int | None, int]:
    """`P:O` for one partition (repeatable) or a bare `O` for every partition (key None)."""
    found: dict[int | None, int] = {}
    for spec in specs:
        partition, _, offset = spec.rpartition(":")
        try:
            key = int(partition) if partition else None
            value = int(offset)
        except ValueError:
            raise ConfigError(f"{flag}: expected PARTITION:OFFSET or OFFSET, got {spec!r}") from None
        if value < 0 or (key is not None and key < 0):
            raise ConfigError(f"{flag}: offsets and partitions are not negative, got {spec!r}")
        found[key] = value
    if None in found and len(found) > 1:
        raise ConfigError(f"{flag}: give either one OFFSET for every partition or PARTITION:OFFSET pairs, not both")
    return found


@dataclass(frozen=True)
class Position:
    """Where a range starts or ends: an instant, or offsets per partition."""

    at: datetime | None = None
    offsets: dict[int | None, int] | None = None


def reader(settings: Settings) -> Consumer:
    """A consumer outside every group: it is assigned partitions and commits nothing."""
    return Consumer(
        settings.kafka(
            "consumer",
            **{
                "group.id": f"schedule-consumer-cli-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                # A fetch at a partition's end answers after this wait; the tools read up to the end often.
                "fetch.wait.max.ms": 50,
            },
        )
    )


def partitions(client: Consumer | Producer, topic: str) -> list[int]:
    metadata = client.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise ConfigError(f"topic {topic} does not exist")
    return sorted(metadata.partitions)


def watermarks(consumer: Consumer, topic: str, parts: list[int]) -> dict[int, tuple[int, int]]:
    """(first offset, end offset) per partition, the end as a fetch reports it.

    Some Kafka-compatible brokers list a stale end for a partition whose last
    batch holds several records; the high watermark of a fetch response is exact,
    so the listed end is confirmed by fetching from it to the partition's end."""
    listed = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}
    ends: dict[int, int] = {}
    assignment = [TopicPartition(topic, p, high) for p, (_, high) in listed.items()]
    with closing(_polled(consumer, topic, assignment, lambda: f"{topic}: no answer from the broker for {STALL_TIMEOUT_S:.0f}s")) as polled:
        for msg in polled:
            if msg.error() is not None:  # the partition's end
                ends[msg.partition()] = msg.offset()
                if len(ends) == len(listed):
                    break
    return {p: (low, max(high, ends[p])) for p, (low, high) in listed.items()}


def resolve(consumer: Consumer, topic: str, position: Position, marks: dict[int, tuple[int, int]], flag: str) -> dict[int, int]:
    """The offset of `position` in each partition it names, kept within the partition's records."""
    if position.at is not None:
        return offsets_at(consumer, topic, position.at, marks)
    assert position.offsets is not None
    unknown = sorted(p for p in position.offsets if p is not None and p not in marks)
    if unknown:
        raise ConfigError(f"{flag}: {topic} has no partition {', '.join(map(str, unknown))} (it has 0..{max(marks)})")
    if None in position.offsets:
        wanted = dict.fromkeys(marks, position.offsets[None])
    else:
        wanted = {p: o for p, o in position.offsets.items() if p is not None}
    return {p: min(max(offset, marks[p][0]), marks[p][1]) for p, offset in wanted.items()}


def offsets_at(consumer: Consumer, topic: str, when: datetime, marks: dict[int, tuple[int, int]]) -> dict[int, int]:
    """Per partition, the first offset whose record timestamp is at or after `when`
    (the partition's end when there is none)."""
    ms = to_millis(when)
    answers = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in marks], timeout=10)
    found = {}
    for tp in answers:
        low, high = marks[tp.partition]
        start = high if tp.offset < 0 else min(max(tp.offset, low), high)
        # Checked against the records themselves: some Kafka-compatible brokers
        # answer an earlier offset (even 0) for an instant they cannot index.
        found[tp.partition] = high
        with closing(read(consumer, topic, {tp.partition: (start, high)})) as records:
            for msg in records:
                if msg.timestamp()[1] >= ms:
                    found[tp.partition] = msg.offset()
                    break
    return found


def read(consumer: Consumer, topic: str, bounds: dict[int, tuple[int, int]]) -> Iterator[Message]:
    """Every record of [start, end) per partition, in offset order within a partition."""
    pending = {p: end for p, (start, end) in bounds.items() if start < end}
    if not pending:
        return
    assignment = [TopicPartition(topic, p, bounds[p][0]) for p in pending]
    stalled = lambda: f"no records from {topic} for {STALL_TIMEOUT_S:.0f}s; partitions still short of their end: {pending}"  # noqa: E731
    with closing(_polled(consumer, topic, assignment, stalled)) as polled:
        for msg in polled:
            p = msg.partition()
            end = pending.get(p)
            if msg.error() is not None or end is None or msg.offset() >= end:
                # A partition ending before the range did (records after the snapshot are out of range).
                pending.pop(p, None)
            else:
                yield msg
                if msg.offset() >= end - 1:
                    pending.pop(p, None)
            if not pending:
                break


def _polled(consumer: Consumer, topic: str, assignment: list[TopicPartition], stalled: Callable[[], str]) -> Iterator[Message]:
    """Records and partition-end markers of the assigned partitions, for as long as the caller reads;
    a broker that sends nothing for STALL_TIMEOUT_S is an error (`stalled()` says which)."""
    consumer.assign(assignment)
    last_progress = time.monotonic()
    try:
        while True:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last_progress > STALL_TIMEOUT_S:
                    raise TimeoutError(stalled())
                continue
            last_progress = time.monotonic()
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"reading {topic}: {err}")
            yield msg
    finally:
        consumer.unassign()
