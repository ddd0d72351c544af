"""A reply as it goes on the wire, whether through the outbox or straight to the broker."""
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from consumer.codecs import Codec, RegistryUnavailable, content_type
from consumer.messages import Incoming

log = logging.getLogger("schedule_consumer.replies")


@dataclass(frozen=True)
class EncodedReply:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, str]]
    # The value the same reply has as a duplicate.
    as_duplicate: bytes


def encode(codec: Codec, reply: dict[str, Any], family: str, topic: str, item: Incoming) -> EncodedReply:
    """The reply in its command's encoding family, keyed by command_id, carrying the command's traceparent."""
    values = codec.encode_reply(reply, family, topic)
    return EncodedReply(topic, reply["command_id"].encode(), values.value, _headers(family, reply["command_id"], item), values.as_duplicate)


def _headers(family: str, command_id: str, item: Incoming) -> list[tuple[str, str]]:
    headers = [("content-type", content_type(family)), ("command_id", command_id)]
    traceparent = item.header("traceparent")
    if traceparent:
        headers.append(("traceparent", traceparent))
    return headers


def produce(
    producer: Producer, codec: Codec, reply: dict[str, Any], family: str, topic: str, item: Incoming,
    on_delivery: Callable[..., None], log_fields: dict[str, Any], value: bytes | None = None,
) -> None:  # fmt: skip
    """Send a reply that does not go through the outbox: a duplicate's, or a dead letter's. `value`:
    the reply already encoded (a duplicate's, as the inbox kept it)."""
    if value is None:
        try:
            value = codec.encode_reply(reply, family, topic).value
        except RegistryUnavailable:
            raise
        except Exception as e:
            # Only a dead letter's reply can fail here, the same way its command did:
            # the dead letter still carries the command, so go on without it.
            log.error("reply not sent: it cannot be encoded for %s: %s", topic, e, extra={**log_fields, "outcome": "failed"})
            return
    command_id = reply["command_id"]
    headers = [(k, v.encode()) for k, v in _headers(family, command_id, item)]
    producer.produce(topic, value=value, key=command_id.encode(), headers=headers, on_delivery=on_delivery)
