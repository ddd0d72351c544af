"""The transactional outbox: events and replies written with the change, published after commit."""
import logging
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, true

from consumer import pipelining
from handlers.statements import Statement
from schemas.tables import event_outbox

log = logging.getLogger("schedule_consumer.outbox")

CHANNEL = "schedule_consumer_outbox"


# It does not wait for its WAL flush: a wake-up lost with the server is a poll's wait, not a lost row.
WAKE_UP = f"select pg_notify('{CHANNEL}', ''), set_config('synchronous_commit', 'off', true)"


def commit_and_notify(conn: Connection) -> None:
    """Commit the transaction that wrote the rows, then wake every relay listening, in this process
    or another, in the same round trip (see `pipelining.commit_then`).

    The wake-up is a transaction of its own, after the commit, not a part of it: a
    transaction that notifies holds a database-wide lock until its commit is flushed,
    which would put the commits of all partition workers in single file, each
    waiting for the previous one's WAL flush. A wake-up that fails is not an error:
    the relay finds the rows on its next poll."""
    error = pipelining.commit_then(conn, WAKE_UP)
    if error is not None:
        log.warning("relays not woken, they find the new outbox rows on their next poll: %s", error)


_RELAY_SETTING = func.set_config("app.outbox_relay", "on", true())
_ACROSS_TENANTS = Statement(select(_RELAY_SETTING))
# A bitmap scan never marks an index entry dead, so every read of the unpublished rows would visit
# again each row published since the last vacuum; a plain index scan marks them as it passes and
# the next reads skip them. With sequential scans off too, the partial index is the only plan left.
_PUBLISHING = Statement(
    select(_RELAY_SETTING, func.set_config("enable_bitmapscan", "off", true()), func.set_config("enable_seqscan", "off", true()))
)


def across_tenants(conn: Connection) -> None:
    """Let this transaction see every tenant's outbox rows: the row-level security policy admits
    the relay's setting, as it admits no other reader."""
    _ACROSS_TENANTS.run(conn)


def publishing(conn: Connection) -> None:
    """`across_tenants`, for a transaction that reads unpublished rows through their partial index."""
    _PUBLISHING.run(conn)


@dataclass(frozen=True)
class Backlog:
    by_kind: dict[str, int]
    oldest_age_seconds: float | None


def backlog(conn: Connection) -> Backlog:
    """Unpublished rows across tenants (read like the relay reads them), and the oldest one's age."""
    across_tenants(conn)
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
