"""Entry references (a UUID or `<master>_<epoch ms>`) and writes under an edit scope."""
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from handlers import entries
from handlers.entries import Entry
from handlers.uow import UnitOfWork
from handlers.validation import invalid
from schemas.tables import schedule_entries as se


@dataclass(frozen=True)
class EntryRef:
    text: str
    master_id: str
    occurrence_ms: int | None


def parse(value: str, path: str) -> EntryRef:
    text = value.strip()
    head, sep, tail = text.partition("_")
    try:
        master_id = str(uuid.UUID(head))
    except ValueError:
        raise invalid(path, "must be a UUID or <UUID>_<epoch milliseconds>") from None
    if not sep:
        return EntryRef(text, master_id, None)
    if not tail.isdigit():
        raise invalid(path, "must be a UUID or <UUID>_<epoch milliseconds>")
    return EntryRef(text, master_id, int(tail))


def load(uow: UnitOfWork, ref: EntryRef, *, for_update: bool) -> Entry | None:
    if ref.occurrence_ms is not None:
        return None
    return entries.load_row(uow, ref.master_id, for_update=for_update)


def check_scope(entry: Entry, ref: EntryRef, scope: str) -> None:
    if scope == "future" and not entry.is_recurring:
        raise invalid("input.recurrence_scope", "future applies to recurring entries only")


def apply(uow: UnitOfWork, before: Entry, ref: EntryRef, scope: str, changes: dict[str, Any]) -> Entry:
    """Write `changes` to the entry the scope selects and return it as it now stands."""
    uow.conn.execute(
        update(se)
        .where(se.c.tenant == uow.ctx.tenant_id, se.c.entry_id == before.entry_id)
        .values(**changes, updated_at=uow.ctx.now)
    )
    return entries.load_row(uow, before.entry_id, for_update=False)
