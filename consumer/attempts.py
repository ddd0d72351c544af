"""The crash-loop guard: delivery attempts counted outside the work transaction.

A batch's positions are recorded as started in a short transaction of their
own before the work begins, and deleted by the work transaction's commit. A
row still there at the next start means the process died with that message in
flight. The count only grows for a message worked on its own, so it names the
culprit rather than every message that shared its batch. A command the inbox
already answers is never counted (no handler runs for it, so it cannot be what
kills the process): when a batch is claimed before the inbox is read, its row is
deleted as it is answered.
"""
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, Connection, Integer, Text, text

from consumer import pipelining
from consumer.messages import Position
from handlers.statements import Sent, Statement, command

@dataclass
class InFlight:
    """What this process has started and not finished, shared by its processors."""

    # A retry after a transient error is not a crash: these are not counted again.
    started: set[Position] = field(default_factory=set)
    # While recovering from a crash, one message at a time across all partitions,
    # so that a death is counted against the message that caused it alone.
    alone: threading.Lock = field(default_factory=threading.Lock)


_BATCH = """
    batch (topic, partition, "offset") as (
        select * from unnest(cast(:topics as text[]), cast(:partitions as int[]), cast(:offsets as bigint[]))
    )
"""

_CLAIM = Statement(text(
    f"""
    with {_BATCH},
    prior as (
        select a.topic, a.partition, a."offset", a.attempts
        from delivery_attempts a join batch b using (topic, partition, "offset")
        where a.consumer_group = :group
    ),
    started as (
        insert into delivery_attempts (consumer_group, topic, partition, "offset", attempts)
        select :group, topic, partition, "offset", 1 from batch
        where not exists (select 1 from prior)
        on conflict (consumer_group, topic, partition, "offset")
        do update set attempts = delivery_attempts.attempts + 1, last_started_at = now()
    )
    select topic, partition, "offset", attempts from prior
    """
).columns(topic=Text, partition=Integer, offset=BigInteger, attempts=Integer))

_BUMP = text(
    """
    insert into delivery_attempts (consumer_group, topic, partition, "offset", attempts)
    values (:group, :topic, :partition, :offset, 1)
    on conflict (consumer_group, topic, partition, "offset")
    do update set attempts = delivery_attempts.attempts + 1, last_started_at = now()
    returning attempts
    """
)

# Run as a Statement: through SQLAlchemy, a statement beginning with WITH is taken for a query
# and waited for, where this one can travel with the work transaction's COMMIT.
_CLEAR = Statement(text(
    f"""
    with {_BATCH}
    delete from delivery_attempts a using batch b
    where a.consumer_group = :group and (a.topic, a.partition, a."offset") = (b.topic, b.partition, b."offset")
    """
))


def _arrays(positions: Iterable[Position]) -> dict[str, list]:
    topics, partitions, offsets = [], [], []
    for topic, partition, offset in positions:
        topics.append(topic)
        partitions.append(partition)
        offsets.append(offset)
    return {"topics": topics, "partitions": partitions, "offsets": offsets}


def _quick(conn: Connection) -> None:
    # The row must survive this process dying, not the server: no need to wait for the WAL flush.
    command(conn, "set local synchronous_commit = off")


@dataclass(frozen=True)
class Claim:
    sent: Sent

    def earlier(self) -> dict[Position, int]:
        """The counts of earlier starts that never finished (none: the positions are recorded)."""
        return {(r.topic, r.partition, r.offset): r.attempts for r in self.sent.rows()}


def claim(conn: Connection, group: str, positions: list[Position]) -> Claim:
    """Record the positions as started, unless an earlier start of any of them
    never finished: then record nothing, and `earlier()` returns those counts.
    Run in a transaction of its own, committed before the work begins; in pipeline
    mode the claim travels with that COMMIT (and with what follows it, see
    `pipelining.restart`), and its answer is read after it."""
    _quick(conn)
    return Claim(_CLAIM.send(conn, {"group": group, **_arrays(positions)}))


def bump(conn: Connection, group: str, position: Position) -> int:
    """Record one more start of a single message; returns how many there have been."""
    topic, partition, offset = position
    with pipelining.transaction(conn):
        _quick(conn)
        return conn.execute(_BUMP, {"group": group, "topic": topic, "partition": partition, "offset": offset}).scalar_one()


def clear(conn: Connection, group: str, positions: list[Position]) -> None:
    """Forget the positions; run inside the work transaction so it commits with it."""
    if positions:
        _CLEAR.run(conn, {"group": group, **_arrays(positions)})
