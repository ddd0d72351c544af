"""The transactional outbox: events and replies written with the change, published after commit."""
from typing import Any

from sqlalchemy import Connection, text

from schemas.tables import event_outbox

CHANNEL = "schedule_consumer_outbox"


def add(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(event_outbox.insert(), rows)


def notify(conn: Connection) -> None:
    """Delivered at commit: wakes every relay listening, in this process or another."""
    conn.execute(text(f"notify {CHANNEL}"))
