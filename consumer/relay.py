"""Publishes outbox rows in commit order, then marks them published.

One relay leads at a time (a session advisory lock), so rows of one appointment
series are never published out of order by two processes. It is woken by
NOTIFY at every commit, with a slow poll as a fallback. The leader also deletes
published rows older than OUTBOX_RETENTION_HOURS, a chunk at a time between
publishing, so the table holds the retention window rather than all history.
"""
import logging
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
from confluent_kafka import KafkaException, Producer
from sqlalchemy import Connection, Engine, any_, bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url

from consumer.acks import Acks
from consumer.config import Settings
from consumer.database import is_transient
from consumer.metrics import Metrics
from consumer.outbox import CHANNEL, across_tenants, publishing
from handlers.statements import Statement
from schemas.tables import event_outbox

log = logging.getLogger("schedule_consumer.relay")

LEADER_LOCK = 0x5C4ED01E  # pg advisory lock key held by the publishing relay
CHUNK = 1000
# Rows deleted per pruning transaction, and how often the leader looks for rows past retention.
PRUNE_CHUNK = 5000
PRUNE_INTERVAL_S = 60.0

# Compiled once and run on the driver's cursor: a relay cycle per commit is paid as often as the
# commits come, and SQLAlchemy's execution of these cost more than the rows they carry.
PENDING = (
    select(
        event_outbox.c.id,
        event_outbox.c.topic,
        event_outbox.c.message_key,
        event_outbox.c.message_value,
        event_outbox.c.headers,
        event_outbox.c.kind,
        event_outbox.c.command_id,
        event_outbox.c.created_at,
    )
    .where(event_outbox.c.published_at.is_(None))
    .order_by(event_outbox.c.id)
    .limit(CHUNK)
)
_PENDING = Statement(PENDING)
# One statement text whatever the number of rows, so it stays prepared.
_PUBLISHED = Statement(
    update(event_outbox)
    .where(event_outbox.c.id == any_(bindparam("ids", type_=ARRAY(event_outbox.c.id.type))))
    .values(published_at=func.now())
)


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return settings.kafka(
        "producer",
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "compression.type": "lz4",
            "message.timeout.ms": 30000,
            **extra,
        }
    )


class Relay:
    def __init__(self, engine: Engine, settings: Settings, poll_interval: float = 1.0, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.poll_interval = poll_interval
        self.metrics = metrics or Metrics()
        self.producer = Producer(producer_config(settings))
        self._stop = threading.Event()
        self._conn: Connection | None = None
        self._leader = False
        self._next_prune = 0.0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Until stopped: publish what is pending, then wait for a NOTIFY or the poll interval."""
        listen_url = make_url(self.engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
        listener = None
        while not self._stop.is_set():
            try:
                if listener is None or listener.closed:
                    listener = psycopg.connect(listen_url, autocommit=True)
                    listener.execute(f"listen {CHANNEL}")
                while self.publish_pending() == CHUNK:
                    pass
                self.prune_when_due()
                for _ in listener.notifies(timeout=self.poll_interval, stop_after=1):
                    pass
            except Exception as e:  # the relay must outlive any outage
                if not (is_transient(e) or isinstance(e, (psycopg.OperationalError, KafkaException))):
                    log.exception("relay error; retrying")
                else:
                    log.warning("relay waiting for the database or broker: %s", e)
                self._reset()
                if listener is not None:
                    listener.close()
                    listener = None
                self._stop.wait(self.poll_interval)
        self.drain()
        if listener is not None:
            listener.close()
        self._reset()

    def drain(self) -> None:
        """Publish everything pending (used at shutdown); errors are left for the next start."""
        try:
            while self.publish_pending() == CHUNK:
                pass
        except Exception as e:
            log.warning("relay could not drain the outbox before stopping: %s", e)
        self.producer.flush(10)

    def _reset(self) -> None:
        """Drop the connection for good rather than back to the pool: the session's leader lock goes
        with it, so another replica's relay can lead while this one waits out an outage."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:
                pass
        self._conn, self._leader = None, False

    def _lead(self) -> Connection | None:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._reset()
            self._conn = self.engine.connect()
        if not self._leader:
            self._leader = bool(self._conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK}).scalar())
            self._conn.commit()
        return self._conn if self._leader else None

    def publish_pending(self) -> int:
        """Publish up to CHUNK unpublished rows, oldest first; returns how many."""
        conn = self._lead()
        if conn is None:
            return 0
        with conn.begin():
            publishing(conn)
            rows = _PENDING.rows(conn)
            if not rows:
                return 0
            acks = Acks()
            for row in rows:
                self.producer.produce(
                    row.topic, value=row.message_value, key=row.message_key,
                    headers=[(k, v.encode()) for k, v in row.headers], on_delivery=acks,
                )  # fmt: skip
                self.producer.poll(0)
            problem = acks.unacknowledged(self.producer, "outbox messages")
            if problem:
                raise KafkaException(problem)
            _PUBLISHED.run(conn, {"ids": [r.id for r in rows]})
        self.metrics.outbox_published([(r.kind, r.command_id, r.created_at.timestamp()) for r in rows])
        return len(rows)

    def prune_when_due(self) -> None:
        """Chunk after chunk while there is nothing to publish: pruning never holds up
        publishing by more than one chunk's delete."""
        if self.settings.outbox_retention_hours <= 0 or time.monotonic() < self._next_prune:
            return
        while self.prune() == PRUNE_CHUNK and self.publish_pending() < CHUNK:
            pass
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S

    def prune(self) -> int:
        """Delete up to PRUNE_CHUNK rows published longer ago than the retention, oldest first; returns
        how many. Rows not yet published are never deleted, however old."""
        conn = self._lead()
        if conn is None:
            return 0
        cutoff = func.now() - timedelta(hours=self.settings.outbox_retention_hours)
        with conn.begin():
            across_tenants(conn)
            expired = (
                select(event_outbox.c.tenant, event_outbox.c.id)
                # Published before the cutoff, so a row the relay sent late stays its full retention. A row is
                # created before it is published: the created_at bound keeps the scan to the old end of its index.
                .where(event_outbox.c.created_at < cutoff, event_outbox.c.published_at < cutoff)
                .order_by(event_outbox.c.created_at)
                .limit(PRUNE_CHUNK)
            )
            deleted = conn.execute(delete(event_outbox).where(tuple_(event_outbox.c.tenant, event_outbox.c.id).in_(expired))).rowcount
        if deleted:
            self.metrics.outbox_pruned.inc(deleted)
            log.info("deleted %d outbox rows published more than %d hours ago", deleted, self.settings.outbox_retention_hours)
        return deleted
