"""What the database saw during a phase: statements, transactions, commit times, outcomes.

Read as the owner (a superuser in the embedded stack), so row-level security
does not hide other tenants' rows.
"""
import re
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from consumer.embedded import RUNTIME_ROLE


@dataclass
class Statements:
    """Statements the runtime role ran (pg_stat_statements counts BEGIN, SAVEPOINT and COMMIT too)."""

    total: int = 0
    by_kind: Counter = field(default_factory=Counter)


def reset(owner_url: str) -> None:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("select pg_stat_statements_reset()")


def statements(owner_url: str) -> Statements:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        rows = conn.execute(
            "select query, calls from pg_stat_statements s join pg_roles r on r.oid = s.userid"
            " where r.rolname = %s and s.dbid = (select oid from pg_database where datname = current_database())",
            (RUNTIME_ROLE,),
        ).fetchall()
    out = Statements()
    for query, calls in rows:
        out.total += calls
        out.by_kind[_kind(query)] += calls
    return out


_INSERTED_INTO = re.compile(r"\binsert\s+into\s+(\w+)", re.IGNORECASE)
_DELETED_FROM = re.compile(r"\bdelete\s+from\s+(\w+)", re.IGNORECASE)


def _kind(query: str) -> str:
    words = query.split()
    head = words[0].lower() if words else ""
    if head in ("insert", "with") and (tables := _INSERTED_INTO.findall(query)):
        # A WITH may insert into several tables and delete from others (handlers.statements.insert_together).
        deleted = "".join(f", delete {t.lower()}" for t in _DELETED_FROM.findall(query))
        return "insert " + " + ".join(t.lower() for t in tables) + deleted
    if head in ("update", "delete"):
        return f"{head} {words[1].lower()}"
    if head == "select" and " from " in query.lower():
        return "select " + query.lower().split(" from ", 1)[1].split()[0]
    return head if head in ("begin", "commit", "savepoint", "release", "rollback", "notify", "listen") else "select"


def commit_times(owner_url: str, command_ids: list[str]) -> dict[str, float]:
    """When each command's transaction committed (epoch ms), from track_commit_timestamp."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        rows = conn.execute(
            "select command_id::text, extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000"
            " from command_inbox where command_id = any(%s::uuid[])",
            (command_ids,),
        ).fetchall()
    return {c: float(ts) for c, ts in rows if ts is not None}


def outcomes(owner_url: str, command_ids: list[str]) -> dict[str, object]:
    """Replies by status and error code, and commands per transaction."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        by_status = conn.execute(
            "select coalesce(result->'error'->>'code', status), count(*) from command_inbox"
            " where command_id = any(%s::uuid[]) group by 1 order by 2 desc",
            (command_ids,),
        ).fetchall()
        return {"status": dict(by_status), "commands_per_transaction": _per_transaction(conn, command_ids)}


def commands_per_transaction(owner_url: str, command_ids: list[str]) -> float:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        return _per_transaction(conn, command_ids)


def _per_transaction(conn: psycopg.Connection, command_ids: list[str]) -> float:
    """The commands' inbox rows per transaction that wrote them (rows sharing an xmin), on average."""
    per_tx = conn.execute(
        "select avg(n) from (select count(*) n from command_inbox where command_id = any(%s::uuid[]) group by xmin::text) x",
        (command_ids,),
    ).fetchone()[0]
    return float(per_tx or 0)


def unpublished(owner_url: str) -> int:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        return conn.execute("select count(*) from event_outbox where published_at is null").fetchone()[0]
