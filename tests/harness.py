"""A running service plus a user's view of its topics, for integration tests."""
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine, text

from consumer.client import routing_key
from consumer.codecs import Family
from consumer.config import Settings
from consumer.embedded import BROKER_CLIENT_TUNING, wait_until
from consumer.service import Service, make_codec

@contextmanager
def failing_updates(owner: Engine, condition: str) -> Iterator[None]:
    """A trigger standing in for a broken PSA database: updates of schedule entries whose new row
    meets `condition` (SQL on `new`) fail with 'storage maintenance'."""
    name = f"fail_{uuid.uuid4().hex[:8]}"
    with owner.begin() as conn:
        conn.execute(text(f"""
            create function {name}() returns trigger language plpgsql as $$
            begin
                if {condition} then raise exception 'storage maintenance'; end if;
                return new;
            end $$;
            create trigger {name} before update on schedule_entries for each row execute function {name}();
        """))  # fmt: skip
    try:
        yield
    finally:
        with owner.begin() as conn:
            conn.execute(text(f"drop trigger {name} on schedule_entries; drop function {name}()"))


TEST_BROKER_TUNING = {**BROKER_CLIENT_TUNING, "max.poll.interval.ms": "7000"}


def topic_settings(base: Settings, prefix: str, partitions: int = 3) -> Settings:
    """Settings with topics and a consumer group of their own, created on the broker."""
    settings = replace(
        base,
        commands_topic=f"{prefix}.commands",
        replies_topic=f"{prefix}.replies",
        events_topic=f"{prefix}.events",
        dlq_topic=f"{prefix}.dlq",
        consumer_group=f"{prefix}.group",
    )
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    topics = [settings.commands_topic, settings.replies_topic, settings.events_topic, settings.dlq_topic]
    for future in admin.create_topics([NewTopic(t, partitions, 1) for t in topics]).values():
        future.result(15)
    return settings


@dataclass
class Observed:
    """Everything the service wrote to its output topics, as a subscriber sees it."""

    replies: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    events: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


class Stack:
    def __init__(self, settings: Settings, owner: Engine, registry: SchemaRegistryClient | None = None, start: bool = True) -> None:
        self.settings = settings
        self.owner = owner
        self.registry = registry
        self.codec = make_codec(settings, registry)
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "enable.idempotence": True, "linger.ms": 1})
        self.seen = Observed()
        self._lock = threading.Lock()
        self._positions: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.service: Service | None = None
        if start:
            self.start_service()

    def start_service(self) -> Service:
        self.service = Service(self.settings, registry=self.registry)
        self.service.start()
        return self.service

    def close(self) -> None:
        if self.service is not None:
            self.service.stop()
        self._stop.set()
        self._reader.join(10)

    # --- writing commands ---------------------------------------------------

    def send(self, command: dict[str, Any], family: str = Family.JSON, headers: list | None = None, key: str | None = None) -> str:
        command = {"command_id": str(uuid.uuid4()), **command}
        value = self.codec.encode_command(command, family, self.settings.commands_topic)
        self.send_raw(value, (key or routing_key(command)).encode(), headers)
        return command["command_id"]

    def send_many(self, commands: list[dict[str, Any]], partition_of: Callable[[dict[str, Any]], int]) -> None:
        """JSON commands keyed by tenant, on the partition given, flushed once."""
        for command in commands:
            value = self.codec.encode_command(command, Family.JSON, self.settings.commands_topic)
            self.producer.produce(self.settings.commands_topic, value=value, key=command["tenant_id"].encode(), partition=partition_of(command))
            self.producer.poll(0)
        assert self.producer.flush(30) == 0

    def send_raw(self, value: bytes, key: bytes | None = None, headers: list | None = None) -> None:
        self.producer.produce(self.settings.commands_topic, value=value, key=key, headers=headers or [])
        assert self.producer.flush(10) == 0

    # --- reading what came out ------------------------------------------------

    def _read(self) -> None:
        consumer = Consumer(self.settings.kafka("consumer", **{"group.id": f"observer-{uuid.uuid4()}", "enable.auto.commit": False}))
        topics = {self.settings.replies_topic: "replies", self.settings.events_topic: "events", self.settings.dlq_topic: "dlq"}
        assignment = []
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                assignment.append(TopicPartition(topic, p, 0))
        consumer.assign(assignment)
        while not self._stop.is_set():
            msg = consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            kind = topics[msg.topic()]
            self._positions[(msg.topic(), msg.partition())] = msg.offset() + 1
            headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
            with self._lock:
                if kind == "replies":
                    reply = self.codec.decode_reply(msg.value())
                    self.seen.replies[reply["command_id"]].append({**reply, "_headers": headers, "_raw": msg.value()})
                elif kind == "events":
                    name, record = self.codec.decode_event(msg.value())
                    self.seen.events.append({"schema": name, "record": record, "key": msg.key().decode(), "headers": headers, "partition": msg.partition(), "offset": msg.offset()})
                else:
                    self.seen.dead_letters.append({"key": msg.key(), "value": msg.value(), "headers": headers})
        consumer.close()

    def reply(self, command_id: str, nth: int = 1, timeout: float = 30) -> dict[str, Any]:
        """The nth reply to a command, waiting for it."""
        wait_until(lambda: len(self.seen.replies.get(command_id, ())) >= nth, timeout, f"reply {nth} to {command_id}")
        with self._lock:
            return self.seen.replies[command_id][nth - 1]

    def replies(self, command_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.seen.replies.get(command_id, ()))

    def events_of(self, command_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.seen.events if e["record"]["causationId"] == command_id]

    def wait_events(self, command_id: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.events_of(command_id)) >= count, timeout, f"{count} events of {command_id}")
        return self.events_of(command_id)

    def dead_letter(self, predicate, timeout: float = 30) -> dict[str, Any]:
        def found() -> bool:
            with self._lock:
                return any(predicate(d) for d in self.seen.dead_letters)

        wait_until(found, timeout, "a dead letter")
        with self._lock:
            return next(d for d in self.seen.dead_letters if predicate(d))

    def quiesce(self, timeout: float = 30) -> None:
        """Wait until the outbox is fully published and this observer has read all of it,
        so that an assertion about what did *not* arrive is meaningful."""
        with self.owner.connect() as conn:
            wait_until(
                lambda: conn.execute(text("select count(*) from event_outbox where published_at is null")).scalar() == 0,
                timeout, "the outbox to be published",
            )  # fmt: skip
        probe = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap_servers, "group.id": "probe"})
        ends = {}
        for topic in (self.settings.replies_topic, self.settings.events_topic, self.settings.dlq_topic):
            for p in probe.list_topics(topic, timeout=10).topics[topic].partitions:
                ends[(topic, p)] = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        probe.close()

        def caught_up() -> bool:
            with self._lock:
                return all(self._positions.get(tp, 0) >= end for tp, end in ends.items())

        wait_until(caught_up, timeout, "the observer to read every published message")
