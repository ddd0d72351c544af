"""The idempotency record: one row per (tenant, command_id) holding the command's result."""
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from consumer.database import set_tenant
from consumer.messages import Position
from handlers.statements import Sent, Statement
from schemas.tables import command_inbox


@dataclass(frozen=True)
class Recorded:
    body_hash: str
    result: dict[str, Any]
    processed_at: Any
    # The record the command was applied from (None for rows written without it).
    source: Position | None
    # The reply to that record read again, encoded (None for rows recorded before it was kept).
    duplicate_reply: bytes | None

    def read_from(self, position: Position) -> bool:
        """The command at `position` is the very record this result came from: the same bytes, so
        the same body, known without reading or hashing it."""
        return self.source == position


# One statement text however many ids a batch brings, so it stays prepared.
_LOOKUP = Statement(select(
    command_inbox.c.command_id,
    command_inbox.c.body_hash,
    command_inbox.c.result,
    command_inbox.c.processed_at,
    command_inbox.c.source_topic,
    command_inbox.c.source_partition,
    command_inbox.c.source_offset,
    command_inbox.c.duplicate_reply,
).where(
    command_inbox.c.tenant == bindparam("tenant"),
    command_inbox.c.command_id == any_(bindparam("ids", type_=ARRAY(command_inbox.c.command_id.type))),
))


@dataclass(frozen=True)
class Asked:
    """The inbox's answers on their way: `answers()` waits for them."""

    sent: list[tuple[str, Sent]]

    def answers(self) -> dict[tuple[str, str], Recorded]:
        found = {}
        for tenant, answer in self.sent:
            for command_id, body_hash, result, processed_at, topic, partition, offset, duplicate_reply in answer.rows():
                source = (topic, partition, offset) if topic is not None else None
                found[(tenant, command_id)] = Recorded(body_hash, result, processed_at, source, duplicate_reply)
        return found


def ask(conn: Connection, keys: Iterable[tuple[str, str]]) -> Asked:
    """Ask for the results already recorded for these (tenant, command_id) pairs: one query per
    tenant (RLS sees one tenant at a time), all sent before any is read, so in pipeline mode they
    travel together, with the transaction's COMMIT when that is sent before they are read."""
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for tenant, command_id in keys:
        by_tenant[tenant].append(command_id)
    sent = []
    for tenant, ids in by_tenant.items():
        set_tenant(conn, tenant)
        sent.append((tenant, ask_tenant(conn, tenant, ids)))
    return Asked(sent)


def ask_tenant(conn: Connection, tenant: str, command_ids: list[str]) -> Sent:
    """`ask` for one tenant's commands, with that tenant set."""
    return _LOOKUP.send(conn, {"tenant": tenant, "ids": command_ids})


def lookup(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Recorded]:
    """The results already recorded for these (tenant, command_id) pairs, in one round trip."""
    return ask(conn, keys).answers()
