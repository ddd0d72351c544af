"""Prometheus metrics of one service instance, in a registry of its own.

Counters and histograms are updated where things happen (poll loop, processor,
relay); the consumer's partitions and the outbox backlog are read at scrape time.
"""
import collections
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumer.dead_letters import DeadLetter
from consumer.loop_watch import LoopWatch
from consumer.messages import Incoming, Outcome, Result
from consumer.outbox import Backlog
from handlers.registry import ACTIONS

log = logging.getLogger("schedule_consumer.metrics")

PREFIX = "schedule_consumer"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Replies waiting in the outbox whose command time is remembered. Another
# replica's relay may publish them, so the oldest are forgotten past this.
AWAITING_LIMIT = 20_000


def command_sent_at(item: Incoming) -> float | None:
    """When the command was produced: its Kafka timestamp, else its issued_at."""
    if item.timestamp_ms and item.timestamp_ms > 0:
        return item.timestamp_ms / 1000
    issued = item.command.issued_at if item.command is not None else None
    return issued.timestamp() if issued is not None else None


def _action_label(action: Any) -> str:
    # Only actions the service knows become label values: the topic is not trusted.
    return action if action in ACTIONS else "unknown"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.commands_received = Counter(
            f"{PREFIX}_commands_received", "Messages taken off the commands topic (redeliveries included)",
            ["partition"], registry=reg,
        )  # fmt: skip
        self.commands_processed = Counter(
            f"{PREFIX}_commands_processed", "Commands finished, by action and outcome "
            "(applied, rejected = domain error answered, duplicate = answered from the inbox, dead_lettered)",
            ["action", "outcome"], registry=reg,
        )  # fmt: skip
        self.command_retries = Counter(
            f"{PREFIX}_command_retries", "Handler attempts repeated after an unexpected error", ["action"], registry=reg
        )
        self.batch_retries = Counter(
            f"{PREFIX}_batch_retries", "Batches retried after a transient database or broker failure", registry=reg
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters", "Messages written to the dead-letter topic, by cause", ["error_class"], registry=reg
        )
        self.inbox_duplicates = Counter(
            f"{PREFIX}_inbox_duplicates", "Commands answered from the inbox; body=different when the "
            "command_id was reused with another body", ["body"], registry=reg,
        )  # fmt: skip
        self.handler_seconds = Histogram(
            f"{PREFIX}_handler_duration_seconds", "Time in a command's handler, all attempts", ["action"], registry=reg
        )
        self.transaction_seconds = Histogram(
            f"{PREFIX}_batch_transaction_duration_seconds", "Time of a batch's database transaction, commit included",
            registry=reg,
        )  # fmt: skip
        self.reply_seconds = Histogram(
            f"{PREFIX}_command_reply_seconds", "From the command's Kafka timestamp (or issued_at) to its reply "
            "acknowledged by the broker", ["action"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.publish_seconds = Histogram(
            f"{PREFIX}_publish_latency_seconds", "From an outbox row's commit to its acknowledgement by the broker",
            ["kind"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.published = Counter(f"{PREFIX}_outbox_published", "Outbox rows published", ["kind"], registry=reg)
        self.outbox_pruned = Counter(f"{PREFIX}_outbox_pruned", "Published outbox rows deleted past OUTBOX_RETENTION_HOURS", registry=reg)
        self._awaiting: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._awaiting_lock = threading.Lock()

    def watch(self, loop: LoopWatch | None, backlog: Callable[[], Backlog]) -> None:
        """Export the consumer's partitions (none in a relay-only process) and the outbox backlog, read at each scrape."""
        self.registry.register(_StateCollector(loop, backlog))

    # --- poll loop -------------------------------------------------------------

    def received(self, messages: list[Message]) -> None:
        # Counted per batch: a label lookup per message costs as much as decoding a duplicate.
        for partition, n in collections.Counter(m.partition() for m in messages).items():
            self.commands_received.labels(str(partition)).inc(n)

    def batch_done(self, results: list[Result], dead: list[DeadLetter]) -> None:
        """A batch's outcomes, once its dead letters and direct replies are acknowledged."""
        now = time.time()
        processed: collections.Counter[tuple[str, str]] = collections.Counter()
        duplicates: collections.Counter[str] = collections.Counter()
        replied: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
        for result in results:
            if result.outcome == Outcome.FAILED:
                continue  # counted with its dead letter
            action = result.incoming.command.action
            processed[(action, result.outcome)] += 1
            if result.outcome == Outcome.DUPLICATE:
                duplicates["different" if result.reused_id else "same"] += 1
                sent = command_sent_at(result.incoming)
                if sent is not None:
                    replied[action].append(now - sent)
        for action, waits in replied.items():
            histogram = self.reply_seconds.labels(action)
            for wait in waits:
                histogram.observe(max(0.0, wait))
        for (action, outcome), n in processed.items():
            self.commands_processed.labels(action, outcome).inc(n)
        for body, n in duplicates.items():
            self.inbox_duplicates.labels(body).inc(n)
        for d in dead:
            cmd = d.item.command
            action = _action_label(cmd.action if cmd is not None else (d.reply or {}).get("action"))
            self.commands_processed.labels(action, "dead_lettered").inc()
            self.dead_letters.labels(d.error_class).inc()
            if d.reply is not None:
                self._replied(action, command_sent_at(d.item), now)

    # --- processor -------------------------------------------------------------

    def handled(self, action: str, seconds: float, attempts: int) -> None:
        self.handler_seconds.labels(action).observe(seconds)
        if attempts > 1:
            self.command_retries.labels(action).inc(attempts - 1)

    def reply_waiting(self, item: Incoming) -> None:
        """The command's reply is in the outbox: remember when the command was sent."""
        sent = command_sent_at(item)
        if sent is None:
            return
        with self._awaiting_lock:
            self._awaiting[item.command.command_id] = (item.command.action, sent)
            while len(self._awaiting) > AWAITING_LIMIT:
                self._awaiting.popitem(last=False)

    # --- relay -----------------------------------------------------------------

    def outbox_published(self, rows: list[tuple[str, str, float]]) -> None:
        """(kind, command_id, created_at epoch seconds) of rows just acknowledged."""
        now = time.time()
        # A relay cycle carries hundreds of rows of two kinds: each kind's children looked up once.
        counts = collections.Counter(kind for kind, _, _ in rows)
        delays = {kind: self.publish_seconds.labels(kind) for kind in counts}
        for kind, n in counts.items():
            self.published.labels(kind).inc(n)
        for kind, command_id, created_at in rows:
            delays[kind].observe(max(0.0, now - created_at))
            if kind == "reply":
                with self._awaiting_lock:
                    action, sent = self._awaiting.pop(command_id, (None, None))
                self._replied(action, sent, now)

    def _replied(self, action: str | None, sent: float | None, now: float) -> None:
        if action is not None and sent is not None:
            self.reply_seconds.labels(action).observe(max(0.0, now - sent))


class _StateCollector(Collector):
    def __init__(self, loop: LoopWatch | None, backlog: Callable[[], Backlog]) -> None:
        self.loop = loop
        self.backlog = backlog

    def collect(self) -> Iterator[Metric]:
        if self.loop is not None:
            yield from self._consumer()
        yield from self._outbox()

    def _consumer(self) -> Iterator[Metric]:
        partitions = self.loop.partitions()
        lag = GaugeMetricFamily(
            f"{PREFIX}_lag_messages", "Messages behind the partition's end (committed offset to high watermark), "
            "from librdkafka statistics", labels=["topic", "partition"],
        )  # fmt: skip
        for p in partitions:
            if p.lag is not None:
                lag.add_metric([p.topic, str(p.partition)], p.lag)
        yield lag
        yield GaugeMetricFamily(f"{PREFIX}_assigned_partitions", "Partitions assigned to this consumer", value=len(partitions))
        yield GaugeMetricFamily(
            f"{PREFIX}_paused_partitions", "Assigned partitions paused while a batch is retried",
            value=sum(p.paused for p in partitions),
        )  # fmt: skip
        rebalances = CounterMetricFamily(
            f"{PREFIX}_rebalances", "Partition assignments changed by the group", labels=["kind"]
        )
        for kind in ("assigned", "revoked", "lost"):
            rebalances.add_metric([kind], self.loop.rebalances[kind])
        yield rebalances
        yield GaugeMetricFamily(
            f"{PREFIX}_seconds_since_poll", "Time since the poll loop last polled the broker",
            value=self.loop.seconds_since_poll(),
        )  # fmt: skip

    def _outbox(self) -> Iterator[Metric]:
        try:
            backlog = self.backlog()
        except Exception as e:  # a scrape must still answer while the database is away
            log.debug("outbox backlog unavailable: %s", e)
            return
        rows = GaugeMetricFamily(f"{PREFIX}_outbox_backlog", "Outbox rows not yet published", labels=["kind"])
        for kind in ("event", "reply"):
            rows.add_metric([kind], backlog.by_kind.get(kind, 0))
        yield rows
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row (0 when none)",
            value=backlog.oldest_age_seconds or 0.0,
        )  # fmt: skip
