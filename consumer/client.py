"""What `send` and `tail` do: talk to the service through its topics, as a user would."""
import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.avro_values import to_json
from consumer.codecs import Codec
from consumer.config import ConfigError, Settings
from consumer.service import make_codec
from handlers.timeutil import iso


def routing_key(command: dict[str, Any]) -> str:
    """`<tenant_id>:<master entry id>` when the command names an entry, else the tenant."""
    entry = (command.get("input") or {}).get("entry_id")
    tenant = command.get("tenant_id", "")
    return f"{tenant}:{str(entry).split('_', 1)[0]}" if isinstance(entry, str) else tenant


def _reader(settings: Settings, topic: str, from_beginning: bool) -> Consumer:
    """A group-less reader of every partition, from the start or from the current end."""
    consumer = Consumer(settings.kafka("consumer", **{"group.id": f"schedule-consumer-cli-{uuid.uuid4()}", "enable.auto.commit": False}))
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise ConfigError(f"topic {topic} does not exist on {settings.kafka_bootstrap_servers}")
    assignment = []
    for p in metadata.partitions:
        # Explicit offsets, so a message produced right after this call is never skipped.
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        assignment.append(TopicPartition(topic, p, low if from_beginning else high))
    consumer.assign(assignment)
    return consumer


def send(settings: Settings, command: dict[str, Any], timeout: float = 30.0, wait: bool = True) -> dict[str, Any] | None:
    """Publish one JSON command (filling command_id and issued_at) and wait for its reply."""
    command.setdefault("command_id", str(uuid.uuid4()))
    command.setdefault("issued_at", iso(datetime.now(timezone.utc)))
    reply_topic = command.get("reply_to") or settings.replies_topic
    replies = _reader(settings, reply_topic, from_beginning=False) if wait else None
    try:
        producer = Producer(settings.kafka("producer", **{"enable.idempotence": True}))
        producer.produce(settings.commands_topic, key=routing_key(command).encode(), value=json.dumps(command).encode())
        if producer.flush(timeout):
            raise ConfigError(f"could not publish to {settings.commands_topic} within {timeout:.0f}s")
        if replies is None:
            return None
        codec = make_codec(settings)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = replies.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            if msg.key() == command["command_id"].encode():
                return codec.decode_reply(msg.value())
        raise ConfigError(f"no reply for command {command['command_id']} on {reply_topic} within {timeout:.0f}s (is the service running?)")
    finally:
        if replies is not None:
            replies.close()


def tail(settings: Settings, what: str, from_beginning: bool = False, limit: int | None = None, idle_timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """Decoded messages of the events, replies or dead-letter topic, as JSON-ready dicts."""
    topic = {"events": settings.events_topic, "replies": settings.replies_topic, "dlq": settings.dlq_topic}[what]
    codec = make_codec(settings)
    consumer = _reader(settings, topic, from_beginning)
    seen, last = 0, time.monotonic()
    try:
        while limit is None or seen < limit:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    return
                continue
            last, seen = time.monotonic(), seen + 1
            yield describe(codec, what, msg)
    finally:
        consumer.close()


def describe(codec: Codec, what: str, msg: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": None if msg.key() is None else msg.key().decode("utf-8", "replace"),
        "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])},
    }
    value = msg.value() or b""
    if what == "events":
        name, record = codec.decode_event(value)
        line.update(schema=name, value=to_json(record))
    elif what == "replies":
        line["value"] = codec.decode_reply(value)
    else:
        try:
            line["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            line["value_base64"] = base64.b64encode(value).decode()
    return line
