"""The transactional outbox: events and replies written with the change, published after commit."""
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, text

from handlers.statements import Statement
from schemas.tables import event_outbox

CHANNEL = "schedule_consumer_outbox"


_NOTIFY = Statement(text(f"notify {CHANNEL}"))


def add(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        # One multi-row INSERT per tenant and batch (SQLAlchemy's insertmanyvalues), not a statement per row.
        conn.execute(event_outbox.insert(), rows)


def notify(conn: Connection) -> None:
    """Delivered at commit: wakes every relay listening, in this process or another."""
    _NOTIFY.run(conn)


@dataclass(frozen=True)
class Backlog:
    by_kind: dict[str, int]
    oldest_age_seconds: float | None


def backlog(conn: Connection) -> Backlog:
    """Unpublished rows across tenants (read like the relay reads them), and the oldest one's age."""
    conn.execute(text("select set_config('app.outbox_relay', 'on', true)"))
    rows = conn.execute(
        select(
            event_outbox.c.kind,
            func.count(),
            func.extract("epoch", func.clock_timestamp() - func.min(event_outbox.c.created_at)),
        )
        .where(event_outbox.c.published_at.is_(None))
        .group_by(event_outbox.c.kind)
    ).all()
    ages = [float(age) for _, _, age in rows if age is not None]
    return Backlog({kind: count for kind, count, _ in rows}, max(ages) if ages else None)
