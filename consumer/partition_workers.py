"""A batch worked in parallel lanes, each transaction on a connection of its own, in order per tenant.

A polled batch is split into at most PARTITION_WORKERS lanes, each holding
whole tenants, as even in size as a greedy split makes them. A lane's commands
are applied in the order they were read (offset order within a partition), in
transactions of at most TRANSACTION_COMMANDS commands, by a worker thread
holding its own Processor (and so its own connection). Tenants never share a
row, so a tenant's commands see exactly what they would in partition order;
only the relative order of different tenants' commits goes, and with it the
skew of producers that key by tenant alone: a partition carrying many tenants
is spread over the workers instead of being worked by one. A tenant's commands
stay in one lane, so a command id resent into another partition of the same
batch is met by the inbox check of the lane that applied it first.

Commands the inbox already answers (read beforehand on the caller's thread, see
`recorded`) go to no lane: they are answered from it, and nothing is written.

The batch returns only when every transaction has committed, so the poll loop
still commits offsets after the database. When one transaction fails (a
transient error: the loop retries the whole batch), the results of the
transactions that did commit are kept, and the retry answers those commands from
them instead of applying them again.
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
from consumer.processor import Processor, Recorded, duplicate, inbox_key, position

# A batch applied again command by command gives each command a savepoint; savepoints that write
# get a subtransaction id, and past 64 in one transaction PostgreSQL's per-backend cache overflows
# and every snapshot gets slower. Stay below it.
TRANSACTION_COMMANDS = 50


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
        # Results of the batch's committed transactions, by position, until the batch returns.
        self._committed: dict[attempts.Position, Result] = {}

    def _processor(self) -> Processor:
        processor = getattr(self._local, "processor", None)
        if processor is None:
            processor = self._local.processor = Processor(self.engine, self.codec, self.settings, self.metrics, self._in_flight)
            with self._lock:
                self._processors.append(processor)
        return processor

    def recorded(self, batch: list[Incoming]) -> Recorded:
        """What the inbox already answers of the batch, read on the calling thread's own connection."""
        return self._processor().recorded(batch)

    def process(self, batch: list[Incoming], recorded: Recorded | None = None) -> list[Result]:
        """`recorded`: what the inbox answers of the batch (from `recorded`); those commands need no
        lane, and the lanes do not read the inbox again. None: each lane reads it for its commands."""
        for item in batch if recorded is not None else ():
            earlier = recorded.get(inbox_key(item))
            if earlier is not None and position(item) not in self._committed:
                self._committed[position(item)] = duplicate(item, earlier)
        lanes = split(batch, self.workers, set(self._committed))
        if self._pool is None or len(lanes) <= 1:
            for lane in lanes:
                self._apply_in_order(lane, recorded)
        else:
            futures = [self._pool.submit(self._apply_in_order, lane, recorded) for lane in lanes]
            # Wait for every lane before raising, so none is still writing when the batch is retried.
            errors = [f.exception() for f in futures]
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise first
        results = [self._committed[position(i)] for i in batch]
        self._committed.clear()
        return results

    def _apply_in_order(self, items: list[Incoming], recorded: Recorded | None) -> None:
        """One lane's commands, a transaction at a time."""
        for start in range(0, len(items), TRANSACTION_COMMANDS):
            for result in self._processor().process(items[start : start + TRANSACTION_COMMANDS], recorded):
                self._committed[position(result.incoming)] = result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._lock:
            for processor in self._processors:
                processor.close()
            self._processors.clear()


def split(batch: list[Incoming], lanes: int, done: set[attempts.Position]) -> list[list[Incoming]]:
    """The commands not yet done, in at most `lanes` lanes of whole tenants; each tenant's commands
    in the order they came, the largest tenants placed first, each on the lane with the fewest."""
    by_tenant: dict[str, list[Incoming]] = defaultdict(list)
    for item in batch:
        if position(item) not in done:
            by_tenant[item.command.tenant_id].append(item)
    out: list[list[Incoming]] = [[] for _ in range(min(lanes, len(by_tenant)))]
    for items in sorted(by_tenant.values(), key=len, reverse=True):
        min(out, key=len).extend(items)
    return out
