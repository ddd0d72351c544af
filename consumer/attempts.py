"""The crash-loop guard: delivery attempts counted outside the work transaction.

A batch's positions are recorded as started in a short transaction of their
own before the work begins (one row for the batch, in delivery_claims), and
deleted by the work transaction's commit. A claim still there at the next start
means the process died with its messages in flight: they move to one row each
in delivery_attempts, where their starts are counted. The count only grows for a message worked on its own, so it names the
culprit rather than every message that shared its batch. A command the inbox
already answers is never counted (no handler runs for it, so it cannot be what
kills the process): when a batch is claimed before the inbox is read, its row is
deleted as it is answered.
"""
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Connection, Delete, Integer, Table, Text, bindparam, column, delete, func, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY

from consumer import pipelining
from consumer.messages import Position
from handlers.statements import Sent, Statement, Write, command
from schemas.tables import delivery_attempts, delivery_claims

@dataclass(frozen=True)
class Finish:
    """The rows a work transaction deletes for its positions (see `InFlight.finishing`)."""

    positions: list[Position]
    # The claims every position of which the transaction finishes.
    claims: list[Position]
    # Positions of a claim the transaction finishes in part: they get a row each, as started once.
    kept: list[Position]
    # Positions with a row of their own in delivery_attempts (or of no claim of this process).
    own_rows: list[Position]


@dataclass
class InFlight:
    """What this process has started and not finished, shared by its processors."""

    # A retry after a transient error is not a crash: these are not counted again. Each position
    # maps to the key of its claim, or to None when its row is its own (a message worked alone).
    started: dict[Position, Position | None] = field(default_factory=dict)
    # While recovering from a crash, one message at a time across all partitions,
    # so that a death is counted against the message that caused it alone.
    alone: threading.Lock = field(default_factory=threading.Lock)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __contains__(self, position: Position) -> bool:
        return position in self.started

    @property
    def claims(self) -> dict[Position, set[Position]]:
        """Each claim's positions not finished yet, by the claim's key."""
        with self._lock:
            claims: dict[Position, set[Position]] = {}
            for p, key in self.started.items():
                if key is not None:
                    claims.setdefault(key, set()).add(p)
            return claims

    def claimed(self, positions: list[Position]) -> None:
        with self._lock:
            self.started.update(dict.fromkeys(positions, positions[0]))

    def counted(self, position: Position) -> None:
        """Started alone, with a row of its own."""
        with self._lock:
            self.started[position] = None

    def forget(self, position: Position) -> None:
        with self._lock:
            self.started.pop(position, None)

    def finishing(self, positions: list[Position]) -> Finish:
        """What finishing these positions deletes; applied to this record by `finished`, once the
        transaction that deletes it has committed."""
        with self._lock:
            keys = {self.started.get(p) for p in positions} - {None}
            done = set(positions)
            kept = [p for p, key in self.started.items() if key in keys and p not in done]
            own = [p for p in positions if self.started.get(p) is None]
        return Finish(positions, sorted(keys), kept, own)

    def finished(self, finish: Finish) -> None:
        with self._lock:
            for p in finish.positions:
                self.started.pop(p, None)
            for p in finish.kept:
                if p in self.started:
                    self.started[p] = None


_BATCH = """
    batch (topic, partition, "offset") as (
        select * from unnest(cast(:topics as text[]), cast(:partitions as int[]), cast(:offsets as bigint[]))
    )
"""

# A claim of the group holding any of the batch's positions was in flight when a process died:
# its positions move to rows of their own, started once, and those of the batch are returned.
# Otherwise the batch's claim is recorded, keyed by its first position.
# The claim must survive this process dying, not the server, so its commit does not wait for the
# WAL flush. The setting is made by the statement itself (a statement less per transaction), in the
# preserved side of an outer join: read whatever the claim finds, unlike a CTE or a condition,
# which PostgreSQL may skip. That side's row comes back alone, all nulls, when nothing was found.
_CLAIM = Statement(text(
    f"""
    with {_BATCH},
    stale as (
        select c.topic, c.partition, c."offset", c.topics, c.partitions, c.offsets
        from delivery_claims c
        where c.consumer_group = :group and exists (
            select 1 from unnest(c.topics, c.partitions, c.offsets) p (topic, partition, "offset")
            join batch b using (topic, partition, "offset")
        )
    ),
    stale_positions as (
        select p.topic, p.partition, p."offset"
        from stale s, unnest(s.topics, s.partitions, s.offsets) p (topic, partition, "offset")
    ),
    prior as (
        select a.topic, a.partition, a."offset", a.attempts
        from delivery_attempts a join batch b using (topic, partition, "offset")
        where a.consumer_group = :group
        union all
        select s.topic, s.partition, s."offset", 1 from stale_positions s join batch b using (topic, partition, "offset")
    ),
    moved as (
        insert into delivery_attempts (consumer_group, topic, partition, "offset", attempts)
        select :group, topic, partition, "offset", 1 from stale_positions
        on conflict do nothing
    ),
    dropped as (
        delete from delivery_claims c using stale s
        where c.consumer_group = :group and (c.topic, c.partition, c."offset") = (s.topic, s.partition, s."offset")
    ),
    started as (
        insert into delivery_claims (consumer_group, topic, partition, "offset", topics, partitions, offsets)
        select :group, b.topic, b.partition, b."offset", cast(:topics as text[]), cast(:partitions as int[]), cast(:offsets as bigint[])
        from (select * from batch limit 1) b
        where not exists (select 1 from prior)
    )
    select p.topic, p.partition, p."offset", p.attempts
    from (select set_config('synchronous_commit', 'off', true)) quick
    left join (
        select topic, partition, "offset", max(attempts) as attempts from prior group by topic, partition, "offset"
    ) p on true
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

def _delete_positions(table: Table, prefix: str = "") -> Delete:
    """Rows of `table` keyed by the given positions (parameters as `_params` names them). Core, not
    text: the claims' deletion also goes as a WITH of the work transaction's inserts (see
    `dropping_claims`)."""
    keys = func.unnest(
        bindparam(f"{prefix}topics", type_=ARRAY(Text)),
        bindparam(f"{prefix}partitions", type_=ARRAY(Integer)),
        bindparam(f"{prefix}offsets", type_=ARRAY(BigInteger)),
    ).table_valued(column("topic", Text), column("partition", Integer), column("offset", BigInteger)).render_derived()
    c = table.c
    return delete(table).where(
        c.consumer_group == bindparam(f"{prefix}group", type_=c.consumer_group.type),
        tuple_(c.topic, c.partition, c.offset) == tuple_(keys.c.topic, keys.c.partition, keys.c.offset),
    )


_CLEAR = Statement(_delete_positions(delivery_attempts))
_CLAIMS_PREFIX = "claims_"
_DROP_CLAIMS = _delete_positions(delivery_claims, _CLAIMS_PREFIX)
_KEEP = Statement(text(
    f"""
    with {_BATCH}
    insert into delivery_attempts (consumer_group, topic, partition, "offset", attempts)
    select :group, topic, partition, "offset", 1 from batch
    on conflict do nothing
    """
))


def _params(group: str, positions: Iterable[Position], prefix: str = "") -> dict[str, Any]:
    """The group and the positions as one array per column, as the statements here bind them."""
    topics, partitions, offsets = [], [], []
    for topic, partition, offset in positions:
        topics.append(topic)
        partitions.append(partition)
        offsets.append(offset)
    return {f"{prefix}group": group, f"{prefix}topics": topics, f"{prefix}partitions": partitions, f"{prefix}offsets": offsets}


@dataclass(frozen=True)
class Claim:
    sent: Sent

    def earlier(self) -> dict[Position, int]:
        """The counts of earlier starts that never finished (none: the positions are recorded)."""
        return {(r.topic, r.partition, r.offset): r.attempts for r in self.sent.rows() if r.topic is not None}


def claim(conn: Connection, group: str, positions: list[Position]) -> Claim:
    """Record the positions as started, unless an earlier start of any of them
    never finished: then record nothing, and `earlier()` returns those counts.
    Run in a transaction of its own, committed before the work begins; in pipeline
    mode the claim travels with that COMMIT (and with what follows it, see
    `pipelining.restart`), and its answer is read after it."""
    return Claim(_CLAIM.send(conn, _params(group, positions)))


def bump(conn: Connection, group: str, position: Position) -> int:
    """Record one more start of a single message; returns how many there have been."""
    topic, partition, offset = position
    with pipelining.transaction(conn):
        # The count must survive this process dying, not the server: no need to wait for the WAL flush.
        command(conn, "set local synchronous_commit = off")
        return conn.execute(_BUMP, {"group": group, "topic": topic, "partition": partition, "offset": offset}).scalar_one()


def clear(conn: Connection, group: str, positions: list[Position]) -> None:
    """Forget the positions' rows of their own; run inside the work transaction so it commits with it."""
    if positions:
        _CLEAR.run(conn, _params(group, positions))


def dropping_claims(group: str, finish: Finish) -> Write | None:
    """The deletion of the claims the work transaction finishes, to go with its inserts (see
    `handlers.statements.insert_together`, which sends it alone when there are none); None when
    there are no claims to delete."""
    if not finish.claims:
        return None
    return Write("claims_finished", _DROP_CLAIMS, _params(group, finish.claims, _CLAIMS_PREFIX))


def finish(conn: Connection, group: str, finish: Finish) -> None:
    """Besides the claims (`dropping_claims`), delete or keep what records the positions as started,
    inside the work transaction: the rows of their own go, and a claim's positions the transaction
    does not finish get rows of their own."""
    if finish.kept:
        _KEEP.run(conn, _params(group, finish.kept))
    clear(conn, group, finish.own_rows)
