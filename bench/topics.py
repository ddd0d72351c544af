"""The benchmark's side of Kafka: feeding commands, and reading back what came out, with timestamps."""
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

Offsets = dict[int, int]
# librdkafka's own lines go through logging (quiet unless LOG_LEVEL=DEBUG), as the service's do.
_RDKAFKA = {"logger": logging.getLogger("rdkafka")}


@dataclass(frozen=True)
class Record:
    key: str
    timestamp_ms: int
    headers: dict[str, str]


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AdminClient({**_RDKAFKA, "bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(15)


class Feed:
    """Produces encoded commands keyed by tenant, and knows where each partition ends.

    The end comes from delivery reports: the embedded broker's high watermark
    counts record batches, not records.
    """

    def __init__(self, bootstrap: str, topic: str, encode: Callable[[dict[str, Any]], bytes]) -> None:
        self.topic = topic
        self.encode_one = encode
        self.ends: Offsets = {}
        self.producer = Producer(
            {**_RDKAFKA, "bootstrap.servers": bootstrap, "linger.ms": 2, "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000}
        )

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            raise RuntimeError(f"command not delivered: {err}")
        self.ends[msg.partition()] = max(self.ends.get(msg.partition(), 0), msg.offset() + 1)

    def _produce(self, command: dict[str, Any], value: bytes, timestamp_ms: int = 0) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic, value=value, key=command["tenant_id"].encode(), timestamp=timestamp_ms, on_delivery=self._delivered
                )
                return
            except BufferError:
                self.producer.poll(0.05)

    def encode(self, commands: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bytes]]:
        """Encoding is done before a measured run, so the benchmark does not compete for the CPU."""
        return [(c, self.encode_one(c)) for c in commands]

    def burst(self, encoded: list[tuple[dict[str, Any], bytes]]) -> None:
        """Everything at once, acknowledged before returning."""
        for command, value in encoded:
            self._produce(command, value)
        if self.producer.flush(120):
            raise RuntimeError("commands not acknowledged by the broker")

    def paced(self, encoded: list[tuple[dict[str, Any], bytes]], rate: float) -> dict[str, int]:
        """At `rate` commands per second; returns each command's record timestamp (ms)."""
        sent: dict[str, int] = {}
        start = time.monotonic()
        i = 0
        while i < len(encoded):
            due = min(len(encoded), int((time.monotonic() - start) * rate) + 1)
            while i < due:
                command, value = encoded[i]
                now_ms = int(time.time() * 1000)
                self._produce(command, value, now_ms)
                sent[command["command_id"]] = now_ms
                i += 1
            self.producer.poll(0)
            time.sleep(0.002)
        if self.producer.flush(60):
            raise RuntimeError("commands not acknowledged by the broker")
        return sent


def _client(bootstrap: str, group: str | None = None, **conf: Any) -> Consumer:
    return Consumer(
        {**_RDKAFKA, "bootstrap.servers": bootstrap, "group.id": group or f"bench-reader-{uuid.uuid4()}", "enable.auto.commit": False, **conf}
    )


def committed(bootstrap: str, group: str, topic: str, partitions: list[int]) -> Offsets:
    client = _client(bootstrap, group)
    try:
        return {tp.partition: tp.offset for tp in client.committed([TopicPartition(topic, p) for p in partitions], timeout=10)}
    finally:
        client.close()


def commit(bootstrap: str, group: str, topic: str, offsets: Offsets) -> None:
    """Place a group that has no members at these offsets."""
    client = _client(bootstrap, group)
    try:
        client.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        client.close()


def wait_consumed(bootstrap: str, group: str, topic: str, target: Offsets, timeout: float, alive: Callable[[], bool]) -> None:
    """Until the group has committed up to `target` on every partition."""
    deadline = time.monotonic() + timeout
    while True:
        done = committed(bootstrap, group, topic, list(target))
        if all(done.get(p, -1) >= end for p, end in target.items()):
            return
        if not alive():
            raise RuntimeError("the service exited before consuming its commands")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the service did not consume {topic} within {timeout:.0f}s: {done} of {target}")
        time.sleep(0.25)


class Tail:
    """Reads a topic from the beginning, a stretch at a time, between the measured runs.

    Paused except while it reads: the embedded broker's work for every record batch it
    hands out grows with the batches the topic holds, and a reader fetching in the
    background while the service is measured would take that CPU from the service.
    The records keep their timestamps, so reading them afterwards changes no latency."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = _client(bootstrap)
        self.partitions = [TopicPartition(topic, p, 0) for p in range(partitions)]
        self.consumer.assign(self.partitions)
        self.consumer.pause(self.partitions)

    def catch_up(self, expect: bool = True, idle: float = 0.6, first: float = 10.0) -> list[Record]:
        """Every record since the last call: waits up to `first` seconds for one when some are
        expected, then until none has arrived for `idle` seconds.

        Call it only after the relay has acknowledged everything it published."""
        out: list[Record] = []
        self.consumer.resume(self.partitions)
        started = quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle or (expect and not out and time.monotonic() - started < first):
            batch = self.consumer.consume(10_000, 0.05)
            for msg in batch:
                if msg.error() is None:
                    headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
                    out.append(Record((msg.key() or b"").decode(), msg.timestamp()[1], headers))
            if batch:
                quiet_since = time.monotonic()
        self.consumer.pause(self.partitions)
        return out

    def close(self) -> None:
        self.consumer.close()
