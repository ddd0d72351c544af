"""The unit of work a handler is given: one command's slice of the batch transaction.

The consumer opens the transaction; the handler reads and writes through
`uow.conn`, raises events with `uow.emit`, records its audit rows with
`handlers.audit.record`, and never commits. Events and audit rows of an applied
command are written with the batch's inbox rows, in the same transaction; a
rejected command's are dropped, and so are its writes: none were sent if it
failed before writing, and if it failed after, the batch is applied again with
a savepoint per command (see consumer.processor).
"""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from handlers.ids import derive_id
from handlers.statements import Sent


@dataclass(frozen=True)
class Actor:
    user_id: str
    workflow_run_id: str | None
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class CommandContext:
    command_id: str
    tenant_id: str
    action: str
    action_version: int
    correlation_id: str | None
    # "now" for the command: its issued_at, else its Kafka timestamp, so a
    # replay writes the same rows.
    now: datetime
    actor_user_id: str | None
    actor_workflow_run_id: str | None


@dataclass
class Event:
    event_type: str
    # Id of the appointment series (master entry, or a standalone entry's own id).
    series_id: str
    payload: dict[str, Any]


@dataclass
class BatchCache:
    """What cannot change inside one batch transaction: resolved actors, holidays."""

    actors: dict[tuple[str, str | None, str | None], Actor | None] = field(default_factory=dict)
    # Actors' permissions asked for ahead, by (tenant, user_id), read by the first command that needs them.
    permissions_asked: dict[tuple[str, str], Sent] = field(default_factory=dict)
    holidays: dict[str, Any] = field(default_factory=dict)
    has_holidays_table: bool | None = None


@dataclass
class UnitOfWork:
    conn: Connection
    ctx: CommandContext
    cache: BatchCache
    actor: Actor | None = None
    events: list[Event] = field(default_factory=list)
    audit_rows: list[dict[str, Any]] = field(default_factory=list)
    _id_counter: dict[str, int] = field(default_factory=dict)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def new_id(self, purpose: str) -> str:
        n = self._id_counter.get(purpose, 0)
        self._id_counter[purpose] = n + 1
        return derive_id(self.ctx.command_id, purpose, n)
