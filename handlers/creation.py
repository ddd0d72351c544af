"""Creating entries: shared by create_entry and assign_user."""
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from handlers import actors, appointment_events, audit, conflicts, entries, recurrence, references
from handlers.entries import Entry
from handlers.errors import NotFound
from handlers.uow import UnitOfWork
from handlers.validation import invalid
from schemas.tables import project_tasks, tickets
from schemas.tables import schedule_entries as se


@dataclass(frozen=True)
class NewEntry:
    assigned_user_ids: list[str]
    title: str
    start: datetime
    end: datetime
    timezone: str | None
    link: dict[str, str] | None  # {type: ticket|project_task, id}
    notes: str | None
    is_private: bool
    recurrence: recurrence.Pattern | None
    conflict_mode: str


def pattern(data: dict[str, Any] | None, start: datetime, path: str) -> recurrence.Pattern | None:
    """The input recurrence record as a Pattern anchored at the window start by default."""
    if data is None:
        return None
    try:
        return recurrence.Pattern(
            frequency=data["frequency"],
            interval=data["interval"],
            days_of_week=None if data["daysOfWeek"] is None else tuple(data["daysOfWeek"]),
            day_of_month=data["dayOfMonth"],
            month_of_year=data["monthOfYear"],
            start_date=data["startDate"] or start,
            end_date=data["endDate"],
            count=data["count"],
            workdays_only=data["workdaysOnly"],
        )
    except recurrence.PatternError as e:
        raise invalid(f"{path}.{e.field}" if e.field else path, str(e)) from None


def require_link(uow: UnitOfWork, link: dict[str, str] | None) -> None:
    if link is None:
        return
    table, key, label = (tickets, tickets.c.ticket_id, "Ticket") if link["type"] == "ticket" else (project_tasks, project_tasks.c.task_id, "Project task")
    found = uow.conn.execute(select(key).where(table.c.tenant == uow.ctx.tenant_id, key == link["id"])).first()
    if found is None:
        raise NotFound(f"{label} not found", {"link": link})


def create(uow: UnitOfWork, new: NewEntry) -> tuple[Entry, list[conflicts.Overlap]]:
    """Check assignees, link and conflicts, insert the entry and its assignees, audit, raise events."""
    actors.ensure_technicians(uow, new.assigned_user_ids)
    require_link(uow, new.link)
    entry_id = uow.new_id("entry")
    start, end, overlaps = conflicts.resolve(uow, new.assigned_user_ids, new.start, new.end, new.conflict_mode, entry_id, for_create=True)
    rule = new.recurrence
    if rule is not None and rule.start_date == new.start and start != new.start:
        rule = replace(rule, start_date=start)  # a shifted series starts where its first entry went
    uow.conn.execute(
        se.insert().values(
            tenant=uow.ctx.tenant_id, entry_id=entry_id, title=new.title, notes=new.notes, status="scheduled",
            scheduled_start=start, scheduled_end=end,
            work_item_type=new.link["type"] if new.link else "ad_hoc", work_item_id=new.link["id"] if new.link else None,
            is_private=new.is_private, is_recurring=rule is not None,
            recurrence_pattern=None if rule is None else rule.to_json(),
            created_at=uow.ctx.now, updated_at=uow.ctx.now,
        )
    )  # fmt: skip
    references.set_assignees(uow, entry_id, new.assigned_user_ids, replace_existing=False)
    conflicts.record(uow, entry_id, overlaps)
    entry = entries.load_row(uow, entry_id, for_update=False)
    audit.record(
        uow, entry_id,
        {"entry_id": entry_id, "assigned_user_ids": new.assigned_user_ids, "start": start, "end": end, "link": new.link,
         "conflict_mode": new.conflict_mode, "conflicts_detected": len(overlaps)},
        schedule_event_id=entry_id,
    )  # fmt: skip
    if entry.appointment_like:
        uow.emit(appointment_events.created(uow, entry, new.timezone))
        for user_id in entry.assigned_user_ids:
            uow.emit(appointment_events.assigned(uow, entry, user_id, (), "single"))
    return entry, overlaps
