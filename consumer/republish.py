"""`schedule-consumer events republish`: send stored events again without re-running any command.

The events are the outbox's own rows, byte for byte: same event ids, keys,
headers and encoded values. They are read with the relay's cross-tenant setting
(`app.outbox_relay`), so the runtime role suffices, and produced here in outbox
id order, which is each appointment's commit order, by an idempotent producer
with acks=all; the command returns once the broker has acknowledged every one.
The rows are not handed back to the relay by clearing `published_at`: that would
erase when each event first went out, do nothing while the service is stopped,
and leave nothing to wait for. Rows the relay has not published yet are its to
publish and are left alone.
"""
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Producer
from sqlalchemy import Connection, Row, func, select

from consumer import outbox
from consumer.acks import Acks
from consumer.config import ConfigError, Settings
from consumer.database import make_engine
from consumer.relay import producer_config
from consumer.wording import plural
from handlers.timeutil import iso
from schemas.tables import event_outbox as o


@dataclass(frozen=True)
class Selection:
    since: datetime
    until: datetime | None = None
    # The events' appointmentId: the schedule entry that holds the change.
    appointment: str | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        for name in ("appointment", "tenant"):
            value = getattr(self, name)
            if value is not None:
                try:
                    uuid.UUID(value)
                except ValueError:
                    raise ConfigError(f"--{name} must be a UUID, got {value!r}") from None
        if self.until is not None and self.until <= self.since:
            raise ConfigError("--until must be after --since")

    def conditions(self) -> list[Any]:
        where = [o.c.kind == "event", o.c.created_at >= self.since]
        if self.until is not None:
            where.append(o.c.created_at < self.until)
        if self.tenant is not None:
            where.append(o.c.tenant == self.tenant)
        if self.appointment is not None:
            where.append(o.c.appointment_id == self.appointment)
        return where


@dataclass
class Report:
    dry_run: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    # Rows of the selection the relay has not published yet: left to it.
    pending: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "republished": 0 if self.dry_run else len(self.events), "events": self.events, "left_to_relay": self.pending}

    def lines(self) -> list[str]:
        topics = sorted({e["topic"] for e in self.events})
        head = "Would republish" if self.dry_run else "Republished"
        tail = "" if self.dry_run else " (the broker acknowledged every one)"
        if not self.events:
            out = ["No published event matches."]
        else:
            out = [f"{head} {plural(len(self.events), 'event')} to {', '.join(topics)}{tail}:"]
        for e in self.events:
            out.append(f"  {e['created_at']}  {e['event_type']:<24} event {e['event_id']}  appointment {e['appointment_id']}  tenant {e['tenant']}")
        if self.pending:
            out.append(f"{plural(self.pending, 'more event')} of the selection not published yet: the relay will publish them.")
        return out


def _rows(conn: Connection, selection: Selection) -> Iterator[Row]:
    query = (
        select(o.c.id, o.c.tenant, o.c.created_at, o.c.topic, o.c.message_key, o.c.message_value, o.c.headers, o.c.event_id, o.c.event_type, o.c.appointment_id)
        .where(*selection.conditions(), o.c.published_at.is_not(None))
        .order_by(o.c.id)
    )
    yield from conn.execution_options(yield_per=500).execute(query)


def republish(settings: Settings, selection: Selection, dry_run: bool = False) -> Report:
    settings.require("database_url")
    report = Report(dry_run)
    engine = make_engine(settings.database_url, pool_size=1)
    producer = None if dry_run else Producer(producer_config(settings))
    acks = Acks()
    try:
        with engine.begin() as conn:
            outbox.across_tenants(conn)
            report.pending = conn.execute(select(func.count()).select_from(o).where(*selection.conditions(), o.c.published_at.is_(None))).scalar_one()
            for row in _rows(conn, selection):
                report.events.append(
                    {"outbox_id": row.id, "created_at": iso(row.created_at), "topic": row.topic, "event_type": row.event_type,
                     "event_id": row.event_id, "appointment_id": row.appointment_id, "tenant": str(row.tenant)}
                )  # fmt: skip
                if producer is not None:
                    producer.produce(
                        row.topic, value=bytes(row.message_value), key=None if row.message_key is None else bytes(row.message_key),
                        headers=[(k, v.encode()) for k, v in row.headers], on_delivery=acks,
                    )  # fmt: skip
                    producer.poll(0)
    finally:
        engine.dispose()
    if producer is not None:
        problem = acks.unacknowledged(producer, "republished events", timeout=60)
        if problem:
            raise RuntimeError(problem)
    return report
