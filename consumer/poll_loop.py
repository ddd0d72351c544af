"""The Kafka side of consumption: poll a batch, hand it over, dead-letter, reply, commit offsets.

It knows no SQL: the processor owns the transaction. Offsets are committed
only after the batch's database commit and after its dead letters and direct
replies are acknowledged by the broker.
"""
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from tenacity import Retrying, retry_if_exception, stop_when_event_set, wait_random_exponential

from consumer import dead_letters, replies
from consumer.acks import Acks
from consumer.dead_letters import DeadLetter
from consumer.codecs import Codec, PoisonMessage, RegistryUnavailable
from consumer.config import Settings
from consumer.database import is_transient
from consumer.loop_watch import LoopWatch, watched_consumer
from consumer.messages import Incoming, Outcome, Result
from consumer.metrics import Metrics
from consumer.processor import ConcurrentDelivery, ConnectionLost, Processor, log_fields, needs_body
from consumer.relay import producer_config

log = logging.getLogger("schedule_consumer.consumer")
T = TypeVar("T")
# How long an idle poll waits for the first command before checking for stop.
IDLE_POLL_S = 0.1


def consumer_config(settings: Settings) -> dict[str, Any]:
    return settings.kafka(
        "consumer",
        **{
            "group.id": settings.consumer_group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Bounds read-ahead so a backlog cannot grow the process without limit.
            "queued.max.messages.kbytes": 16384,
        }
    )


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, (ConcurrentDelivery, ConnectionLost, RegistryUnavailable)):
        return True
    if isinstance(error, KafkaException):
        return error.args[0].retriable() if error.args and isinstance(error.args[0], KafkaError) else True
    return is_transient(error) or isinstance(error, (ConnectionError, TimeoutError))


class PollLoop:
    def __init__(self, settings: Settings, processor: Processor, codec: Codec, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.codec = codec
        self.metrics = metrics or Metrics()
        self.watch = LoopWatch()
        self.consumer = watched_consumer(consumer_config(settings), self.watch)
        self.producer = Producer(producer_config(settings))
        self._stop = threading.Event()
        self.assigned: set[tuple[str, int]] = set()
        # Whether the next batch asks the inbox before reading inputs: at start-up (redeliveries are
        # likely) and after a batch it answered in part. After a batch of new commands it does not:
        # the lanes ask it with their claim, a round trip less before every batch.
        self._inbox_first = True

    def stop(self) -> None:
        self._stop.set()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("partitions assigned: %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned -= {(p.topic, p.partition) for p in partitions}
        log.info("partitions revoked: %s", sorted(p.partition for p in partitions))

    def run(self) -> None:
        self.consumer.subscribe([self.settings.commands_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self._stop.is_set():
                messages = self._next_batch()
                batch = [m for m in messages if self._usable(m)]
                if not batch:
                    continue
                try:
                    self.handle(batch)
                except Exception as e:
                    if not self._stop.is_set():
                        raise
                    # Stopped while waiting out an outage: nothing of the batch was committed.
                    log.warning("stopping with a batch unfinished, it will be redelivered: %s", e)
        finally:
            self.consumer.close()
            self.producer.flush(10)

    def _next_batch(self) -> list[Message]:
        """Up to BATCH_SIZE commands. With no linger the batch is what arrived while the last one
        was applied: one command alone at a trickle, many under load, never a wait to fill it."""
        size, linger = self.settings.batch_size, self.settings.batch_linger_ms / 1000
        if linger > 0:
            return self.consumer.consume(size, linger)
        first = self.consumer.consume(1, IDLE_POLL_S)
        if not first or size == 1:
            return first
        return first + self.consumer.consume_more(size - 1)

    def _usable(self, message: Message) -> bool:
        err = message.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", err)
        return False

    def handle(self, messages: list[Message]) -> None:
        """Decode, apply, dead-letter, reply, then commit offsets: in that order."""
        self.metrics.received(messages)
        results, dead = self._retrying(lambda: self._decode_and_apply(self._still_assigned(messages)))
        for result in results:
            self._log(result)
            if result.outcome == Outcome.FAILED:
                dead.append(self._failed(result))
        self._retrying(self._send_direct, results, dead)
        self.metrics.batch_done(results, dead)
        self._commit(messages)

    def _still_assigned(self, messages: list[Message]) -> list[Message]:
        """A rebalance during a retry hands partitions to another consumer: leave their messages to it."""
        return [m for m in messages if (m.topic(), m.partition()) in self.assigned]

    def _decode_and_apply(self, messages: list[Message]) -> tuple[list[Result], list[DeadLetter]]:
        """Envelopes first, then (while it answers) the inbox: only commands it does not answer from
        the very record they were applied from have their input read, so a replay reads none."""
        envelopes, dead = [], []
        for m in messages:
            try:
                envelopes.append(Incoming.of(m, self.codec.decode_envelope(m.value())))
            except PoisonMessage as p:
                dead.append(self._poison(Incoming.of(m), p))
        if not envelopes:
            return [], dead
        recorded = self.processor.recorded(envelopes) if self._inbox_first else None
        items = []
        for item in envelopes:
            try:
                if needs_body(item, recorded):
                    item.command.body  # noqa: B018 - read here, so that a poison input is dead-lettered
                items.append(item)
            except PoisonMessage as p:
                dead.append(self._poison(item, p))
        results = self.processor.process(items, recorded) if items else []
        self._inbox_first = any(r.outcome == Outcome.DUPLICATE for r in results)
        return results, dead

    def _poison(self, incoming: Incoming, p: PoisonMessage) -> DeadLetter:
        log.warning("dead-lettering %s: %s", p.error_class, p.message, extra={**log_fields(incoming), **p.partial, "outcome": "dead_lettered", "error_class": p.error_class})
        return DeadLetter(
            incoming, p.error_class, p.message, 1,
            reply=dead_letters.error_reply(p.partial, "VALIDATION_ERROR", p.message, p.error_class),
            reply_topic=p.partial.get("reply_to") or self.settings.replies_topic,
            reply_family=p.family,
        )  # fmt: skip

    def _failed(self, result: Result) -> DeadLetter:
        cmd, error = result.incoming.command, result.error
        partial = {"command_id": cmd.command_id, "tenant_id": cmd.tenant_id, "action": cmd.action, "correlation_id": cmd.correlation_id}
        return DeadLetter(
            result.incoming, type(error).__name__, str(error), result.attempts,
            reply=dead_letters.error_reply(partial, "INTERNAL_ERROR", str(error), type(error).__name__),
            reply_topic=cmd.reply_to or self.settings.replies_topic,
            reply_family=cmd.family,
        )  # fmt: skip

    def _send_direct(self, results: list[Result], dead: list[DeadLetter]) -> None:
        """Dead letters and replies not carried by the outbox; all acknowledged before offsets move."""
        acks = Acks()
        for d in dead:
            self.producer.produce(
                self.settings.dlq_topic, value=d.item.value, key=d.item.key,
                headers=dead_letters.headers(d.item, d.error_class, d.message, d.attempts), on_delivery=acks,
            )  # fmt: skip
            if d.reply is not None:
                self._produce_reply(d.reply_topic, d.reply, d.reply_family, d.item, acks)
        for result in results:
            if result.outcome == Outcome.DUPLICATE:
                cmd = result.incoming.command
                self._produce_reply(cmd.reply_to or self.settings.replies_topic, result.reply, cmd.family, result.incoming, acks, result.reply_value)
        problem = acks.unacknowledged(self.producer, "direct messages")
        if problem:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, problem))

    def _produce_reply(self, topic: str, reply: dict[str, Any], family: str, item: Incoming, on_delivery: Callable, value: bytes | None = None) -> None:
        replies.produce(self.producer, self.codec, reply, family, topic, item, on_delivery, log_fields(item), value)

    def _commit(self, messages: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic(), m.partition())
            last[key] = max(last.get(key, -1), m.offset())
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items() if (t, p) in self.assigned]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            # The group moved on (rebalance): the new owner re-reads from the last
            # commit and the inbox answers what this batch already applied.
            log.warning("offset commit failed, the batch will be answered from the inbox on redelivery: %s", e)

    def _retrying(self, fn: Callable[..., T], *args: Any) -> T:
        """Retry transient failures forever, pausing the assignment and keeping the group membership alive."""
        paused: list[TopicPartition] = []

        def keep_alive(seconds: float) -> None:
            nonlocal paused
            if not paused:
                paused = self.consumer.assignment()
                self.consumer.pause(paused)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                msg = self.consumer.poll(min(0.2, max(0.0, deadline - time.monotonic())))
                if msg is not None and msg.error() is None:
                    # Fetched for a partition assigned meanwhile: rewind so nothing is skipped.
                    tp = TopicPartition(msg.topic(), msg.partition(), msg.offset())
                    self.consumer.seek(tp)
                    self.consumer.pause([tp])
                    paused.append(tp)

        def before_sleep(state: Any) -> None:
            self.metrics.batch_retries.inc()
            log.warning(
                "transient failure, retrying (attempt %d): %s",
                state.attempt_number, state.outcome.exception(),
            )  # fmt: skip

        try:
            for attempt in Retrying(
                retry=retry_if_exception(_is_retryable),
                stop=stop_when_event_set(self._stop),
                wait=wait_random_exponential(multiplier=0.1, max=5.0),
                sleep=keep_alive,
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    return fn(*args)
        finally:
            if paused:
                self._resume(paused)
        raise AssertionError("unreachable")

    def _resume(self, partitions: list[TopicPartition]) -> None:
        still = [tp for tp in partitions if (tp.topic, tp.partition) in self.assigned]
        if still:
            self.consumer.resume(still)

    def _log(self, result: Result) -> None:
        item = result.incoming
        fields = {**log_fields(item), "outcome": result.outcome}
        reply = result.reply or {}
        if reply.get("error"):
            fields["error_code"] = reply["error"]["code"]
        if result.outcome == Outcome.FAILED:
            fields["error_class"] = type(result.error).__name__
            log.error("command failed after %d attempts: %s", result.attempts, result.error, extra=fields)
        else:
            log.info("command %s", result.outcome, extra=fields)
