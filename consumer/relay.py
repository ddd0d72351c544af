"""Publishes outbox rows in commit order, then marks them published.

One relay leads at a time (a session advisory lock), so rows of one appointment
series are never published out of order by two processes. It is woken by
NOTIFY at every commit, with a slow poll as a fallback.
"""
import logging
import threading
from typing import Any

import psycopg
from confluent_kafka import KafkaException, Producer
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.engine import make_url

from consumer.acks import Acks
from consumer.config import Settings
from consumer.database import is_transient
from consumer.metrics import Metrics
from consumer.outbox import CHANNEL
from schemas.tables import event_outbox

log = logging.getLogger("schedule_consumer.relay")

LEADER_LOCK = 0x5C4ED01E  # pg advisory lock key held by the publishing relay
CHUNK = 1000


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
        if self._conn is not None:
            try:
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
            conn.execute(text("select set_config('app.outbox_relay', 'on', true)"))
            rows = conn.execute(
                select(
                    event_outbox.c.tenant,
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
            ).all()
            if not rows:
                return 0
            acks = Acks()
            for _tenant, _id, topic, key, value, headers, *_ in rows:
                self.producer.produce(
                    topic, value=bytes(value), key=None if key is None else bytes(key),
                    headers=[(k, v.encode()) for k, v in headers], on_delivery=acks,
                )  # fmt: skip
                self.producer.poll(0)
            problem = acks.unacknowledged(self.producer, "outbox messages")
            if problem:
                raise KafkaException(problem)
            conn.execute(
                update(event_outbox)
                .where(event_outbox.c.id.in_([r.id for r in rows]))
                .values(published_at=text("now()"))
            )
        self.metrics.outbox_published([(r.kind, r.command_id, r.created_at.timestamp()) for r in rows])
        return len(rows)
