"""Partitions worked in parallel, each transaction on a connection of its own, in order within a partition.

A polled batch is split by partition; each partition's commands are applied in
offset order, in transactions of at most TRANSACTION_COMMANDS commands, by one
worker thread holding its own Processor (and so its own connection). Threads
overlap one partition's Python work with another's database round trips.

The batch returns only when every transaction has committed, so the poll loop
still commits offsets after the database. When one transaction fails (a
transient error: the loop retries the whole batch), the transactions that did
commit are remembered, and the retry answers them from memory instead of
applying them again.
"""
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from consumer import attempts
from consumer.codecs import Codec
from consumer.config import Settings
from consumer.messages import Incoming, Result
from consumer.metrics import Metrics
from consumer.processor import Processor

# Savepoints that write get a subtransaction id; past 64 in one transaction PostgreSQL's
# per-backend cache overflows and every snapshot gets slower. Stay below it.
TRANSACTION_COMMANDS = 50

Chunk = tuple[str, int, int, int]  # topic, partition, first and last offset


class PartitionWorkers:
    """Drop-in for a Processor: `process(batch)` and `close()`."""

    def __init__(self, engine: Engine, codec: Codec, settings: Settings, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.codec = codec
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._in_flight = attempts.InFlight()
        self.workers = max(1, settings.partition_workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="partition") if self.workers > 1 else None
        self._local = threading.local()
        self._processors: list[Processor] = []
        self._lock = threading.Lock()
        self._committed: dict[Chunk, list[Result]] = {}

    def _processor(self) -> Processor:
        processor = getattr(self._local, "processor", None)
        if processor is None:
            processor = self._local.processor = Processor(self.engine, self.codec, self.settings, self.metrics, self._in_flight)
            with self._lock:
                self._processors.append(processor)
        return processor

    def process(self, batch: list[Incoming]) -> list[Result]:
        by_partition: dict[tuple[str, int], list[Incoming]] = defaultdict(list)
        for item in batch:
            by_partition[(item.topic, item.partition)].append(item)
        groups = list(by_partition.values())
        if self._pool is None or len(groups) == 1 or _shared_commands(groups):
            done = [self._apply_in_order(g) for g in groups]
        else:
            futures = [self._pool.submit(self._apply_in_order, g) for g in groups]
            # Wait for every partition before raising, so none is still writing when the batch is retried.
            errors = [f.exception() for f in futures]
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise first
            done = [f.result() for f in futures]
        self._committed.clear()
        order = {(i.topic, i.partition, i.offset): n for n, i in enumerate(batch)}
        results = [r for group in done for r in group]
        results.sort(key=lambda r: order[(r.incoming.topic, r.incoming.partition, r.incoming.offset)])
        return results

    def _apply_in_order(self, items: list[Incoming]) -> list[Result]:
        """One partition's commands, a transaction at a time."""
        out: list[Result] = []
        for start in range(0, len(items), TRANSACTION_COMMANDS):
            chunk = items[start : start + TRANSACTION_COMMANDS]
            key = (chunk[0].topic, chunk[0].partition, chunk[0].offset, chunk[-1].offset)
            if key not in self._committed:
                self._committed[key] = self._processor().process(chunk)
            out.extend(self._committed[key])
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._lock:
            for processor in self._processors:
                processor.close()
            self._processors.clear()


def _shared_commands(groups: list[list[Incoming]]) -> bool:
    """A command id in two partitions of one batch (a producer resent it under another key):
    applied in parallel, both would miss the inbox. Such a batch is worked one partition after another."""
    seen: dict[tuple[str, str], int] = {}
    for n, group in enumerate(groups):
        for item in group:
            key = (item.command.tenant_id, item.command.command_id)
            if seen.setdefault(key, n) != n:
                return True
    return False
