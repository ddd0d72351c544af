"""Schedule entries: loading by reference, summaries, private-entry redaction."""
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select

from handlers.statements import Statement
from handlers.uow import Actor, UnitOfWork
from schemas.tables import schedule_entries as se
from schemas.tables import schedule_entry_assignees as sea

APPOINTMENT_LIKE = frozenset({"ticket", "appointment_request"})

# Aliased so the subquery still correlates to the entry when a caller joins the assignees too.
_a = sea.alias("entry_assignees")
_assignees = func.array(
    select(_a.c.user_id)
    .where(_a.c.tenant == se.c.tenant, _a.c.entry_id == se.c.entry_id)
    .order_by(_a.c.user_id)
    .correlate(se)
    .scalar_subquery()
)


@dataclass(frozen=True)
class Entry:
    entry_id: str
    title: str
    notes: str | None
    status: str
    scheduled_start: datetime | None
    scheduled_end: datetime | None
    work_item_id: str | None
    work_item_type: str
    is_private: bool
    is_recurring: bool
    recurrence_pattern: Any
    original_entry_id: str | None
    assigned_user_ids: tuple[str, ...]

    @property
    def series_id(self) -> str:
        return self.original_entry_id or self.entry_id

    @property
    def appointment_like(self) -> bool:
        return self.work_item_type in APPOINTMENT_LIKE

    @property
    def ticket_id(self) -> str | None:
        return self.work_item_id if self.work_item_type == "ticket" else None


def from_row(row: Any) -> Entry:
    """From a row holding COLUMNS (a SQLAlchemy Row or a statements row)."""
    return Entry(
        entry_id=row.entry_id,
        title=row.title,
        notes=row.notes,
        status=row.status or "scheduled",
        scheduled_start=row.scheduled_start,
        scheduled_end=row.scheduled_end,
        work_item_id=row.work_item_id,
        work_item_type=row.work_item_type,
        is_private=bool(row.is_private),
        is_recurring=bool(row.is_recurring),
        recurrence_pattern=row.recurrence_pattern,
        original_entry_id=row.original_entry_id,
        assigned_user_ids=tuple(str(u) for u in row.assigned_user_ids),
    )


COLUMNS = (
    se.c.entry_id,
    se.c.is_recurring,
    se.c.original_entry_id,
    se.c.title,
    se.c.notes,
    se.c.status,
    se.c.scheduled_start,
    se.c.scheduled_end,
    se.c.work_item_id,
    se.c.work_item_type,
    se.c.is_private,
    se.c.recurrence_pattern,
    _assignees.label("assigned_user_ids"),
)


_by_id = select(*COLUMNS).where(se.c.tenant == bindparam("tenant"), se.c.entry_id == bindparam("entry_id"))
_BY_ID, _BY_ID_FOR_UPDATE = Statement(_by_id), Statement(_by_id.with_for_update(of=se))


def load_row(uow: UnitOfWork, entry_id: str, *, for_update: bool) -> Entry | None:
    """A stored row with its assignees; locked when the caller will write it."""
    rows = (_BY_ID_FOR_UPDATE if for_update else _BY_ID).rows(uow.conn, {"tenant": uow.ctx.tenant_id, "entry_id": entry_id})
    return from_row(rows[0]) if rows else None


def sees_details(actor: Actor, entry: Entry) -> bool:
    return (
        not entry.is_private
        or actor.user_id in entry.assigned_user_ids
        or actor.may("user_schedule:update")
    )


def redacted(entry: Entry) -> Entry:
    return replace(entry, title="Busy", notes="", work_item_id=None, work_item_type="ad_hoc")


def summary(entry: Entry) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "original_entry_id": entry.original_entry_id,
        "title": entry.title,
        "notes": entry.notes,
        "status": entry.status,
        "scheduled_start": entry.scheduled_start,
        "scheduled_end": entry.scheduled_end,
        "work_item_id": entry.work_item_id,
        "work_item_type": entry.work_item_type,
        "is_private": entry.is_private,
        "is_recurring": entry.is_recurring,
        "assigned_user_ids": list(entry.assigned_user_ids),
    }


def append_notes(existing: str | None, parts: list[str | None]) -> str | None:
    """Reasons and notes go after the existing notes, separated by a blank line."""
    added = [p for p in parts if p]
    if not added:
        return existing
    return "\n\n".join(([existing] if existing else []) + added)
