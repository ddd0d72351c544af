"""A reply as it goes on the wire, whether through the outbox or straight to the broker."""
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from consumer.codecs import Codec, RegistryUnavailable
from consumer.messages import Incoming

log = logging.getLogger("schedule_consumer.replies")


@dataclass(frozen=True)
class EncodedReply:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, str]]


def encode(codec: Codec, reply: dict[str, Any], family: str, topic: str, item: Incoming) -> EncodedReply:
    """The reply in its command's encoding family, keyed by command_id, carrying the command's traceparent."""
    value, content_type = codec.encode_reply(reply, family, topic)
    headers = [("content-type", content_type), ("command_id", reply["command_id"])]
    traceparent = item.header("traceparent")
    if traceparent:
        headers.append(("traceparent", traceparent))
    return EncodedReply(topic, reply["command_id"].encode(), value, headers)


def produce(producer: Producer, codec: Codec, reply: dict[str, Any], family: str, topic: str, item: Incoming, on_delivery: Callable[..., None], log_fields: dict[str, Any]) -> None:
    """Send a reply that does not go through the outbox: a duplicate's, or a dead letter's."""
    try:
        encoded = encode(codec, reply, family, topic, item)
    except RegistryUnavailable:
        raise
    except Exception as e:
        # Only a dead letter's reply can fail here, the same way its command did:
        # the dead letter still carries the command, so go on without it.
        log.error("reply not sent: it cannot be encoded for %s: %s", topic, e, extra={**log_fields, "outcome": "failed"})
        return
    headers = [(k, v.encode()) for k, v in encoded.headers]
    producer.produce(encoded.topic, value=encoded.value, key=encoded.key, headers=headers, on_delivery=on_delivery)
