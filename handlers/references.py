"""Entry references (a UUID or `<master>_<epoch ms>`) and writes under an edit scope.

single on an occurrence extracts a standalone row and adds an exception to the
series; future ends the series before the occurrence and starts a new master;
all edits the master. A plain entry is edited in place.
"""
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update

from handlers import entries, recurrence
from handlers.entries import Entry
from handlers.statements import Statement, insert_rows
from handlers.timeutil import from_millis
from handlers.uow import UnitOfWork
from handlers.validation import invalid
from schemas.tables import holidays as holidays_table
from schemas.tables import schedule_entries as se
from schemas.tables import schedule_entry_assignees as sea

ASSIGNEES = "assigned_user_ids"


@dataclass(frozen=True)
class EntryRef:
    text: str
    master_id: str
    occurrence_ms: int | None


def parse(value: str, path: str) -> EntryRef:
    text_ = value.strip()
    try:
        ref = recurrence.parse_reference(text_)
    except recurrence.BadReference:
        raise invalid(path, "must be a UUID or <UUID>_<epoch milliseconds>") from None
    return EntryRef(text_, ref.master_id, ref.occurrence_ms)


_HOLIDAYS = Statement(
    select(holidays_table.c.holiday_date, holidays_table.c.is_recurring).where(
        holidays_table.c.tenant == bindparam("tenant"), holidays_table.c.schedule_id.is_(None)
    )
)
_HAS_HOLIDAYS_TABLE = Statement(select(func.to_regclass("holidays").is_not(None).label("present")))


def holidays(uow: UnitOfWork) -> recurrence.Holidays:
    """The tenant's global holidays (none when the PSA has no holidays table), cached per batch."""
    tenant = uow.ctx.tenant_id
    if tenant not in uow.cache.holidays:
        if uow.cache.has_holidays_table is None:
            uow.cache.has_holidays_table = _HAS_HOLIDAYS_TABLE.scalar(uow.conn)
        rows = []
        if uow.cache.has_holidays_table:
            rows = _HOLIDAYS.rows(uow.conn, {"tenant": tenant})
        uow.cache.holidays[tenant] = recurrence.Holidays.from_rows((d, bool(r)) for d, r in rows)
    return uow.cache.holidays[tenant]


def series_of(entry: Entry) -> recurrence.Series | None:
    """The series a master row defines; None for a plain row or an unreadable pattern."""
    if not entry.is_recurring or entry.original_entry_id or entry.scheduled_start is None:
        return None
    try:
        pattern = recurrence.Pattern.from_json(entry.recurrence_pattern)
    except recurrence.PatternError:
        return None
    if pattern is None:
        return None
    return recurrence.Series(entry.entry_id, entry.scheduled_start, entry.scheduled_end, pattern)


def occurrence(master: Entry, series: recurrence.Series, start: datetime) -> Entry:
    return replace(
        master,
        entry_id=recurrence.virtual_id(master.entry_id, start),
        scheduled_start=start,
        scheduled_end=start + series.duration,
        original_entry_id=master.entry_id,
        is_recurring=True,
    )


def load(uow: UnitOfWork, ref: EntryRef, *, for_update: bool) -> Entry | None:
    """The entry a reference names: a stored row, or a generated occurrence of a series."""
    row = entries.load_row(uow, ref.master_id, for_update=for_update)
    if row is None or ref.occurrence_ms is None:
        return row
    series = series_of(row)
    start = from_millis(ref.occurrence_ms)
    if series is None or not recurrence.is_occurrence(series, start, holidays(uow)):
        return None
    return occurrence(row, series, start)


def check_scope(entry: Entry, scope: str) -> None:
    if scope == "future" and not entry.is_recurring:
        raise invalid("input.recurrence_scope", "future applies to recurring entries only")


def apply(uow: UnitOfWork, before: Entry, scope: str, changes: dict[str, Any]) -> Entry:
    """Write `changes` (columns, and `assigned_user_ids`) to what the scope selects; returns
    the entry that now holds the change."""
    master_id = before.original_entry_id or before.entry_id
    master = before if master_id == before.entry_id else entries.load_row(uow, master_id, for_update=False)
    series = series_of(master) if master is not None else None
    if series is None:
        _update(uow, before.entry_id, changes)
        # The row was locked when loaded, so its new state follows from the changes.
        return replace(before, **{k: tuple(v) if k == ASSIGNEES else v for k, v in changes.items()})
    at = before.scheduled_start
    if scope == "all" or (scope == "future" and at == master.scheduled_start):
        return _edit_series(uow, master, series, before, changes)
    if scope == "future":
        _update(uow, master.entry_id, {"recurrence_pattern": recurrence.truncate_before(series.pattern, at).to_json()})
        start = changes.get("scheduled_start", at)
        end = changes.get("scheduled_end", start + (before.scheduled_end - at))
        pattern = recurrence.continue_from(series.pattern, at, start)
        return _insert(uow, before, {**changes, "scheduled_start": start, "scheduled_end": end, "recurrence_pattern": pattern.to_json(), "is_recurring": True})
    _update(uow, master.entry_id, {"recurrence_pattern": recurrence.with_exception(series.pattern, at).to_json()})
    return _insert(uow, before, {**changes, "recurrence_pattern": None, "is_recurring": False})


def _edit_series(uow: UnitOfWork, master: Entry, series: recurrence.Series, before: Entry, changes: dict[str, Any]) -> Entry:
    """`all`: a new window moves every occurrence by the same offset."""
    columns = dict(changes)
    if "scheduled_start" in changes:
        shift = changes["scheduled_start"] - before.scheduled_start
        start = master.scheduled_start + shift
        columns["scheduled_start"] = start
        columns["scheduled_end"] = start + (changes["scheduled_end"] - changes["scheduled_start"])
        days = (changes["scheduled_start"].date() - before.scheduled_start.date()).days
        columns["recurrence_pattern"] = _shifted(series.pattern, shift, days).to_json()
    _update(uow, master.entry_id, columns)
    return entries.load_row(uow, master.entry_id, for_update=False)


def _shifted(pattern: recurrence.Pattern, shift: timedelta, days: int) -> recurrence.Pattern:
    """The pattern moved by `shift`; `days` is how many calendar days (UTC) the occurrences move."""
    weekdays = None if pattern.days_of_week is None else tuple((d + days) % 7 for d in pattern.days_of_week)
    return replace(
        pattern,
        start_date=pattern.start_date + shift,
        end_date=None if pattern.end_date is None else pattern.end_date + timedelta(days=days),
        exceptions=tuple(d + timedelta(days=days) for d in pattern.exceptions),
        days_of_week=weekdays,
    )


@cache
def _update_of(columns: frozenset[str]) -> Statement:
    """An UPDATE of these columns, compiled once per set of columns."""
    values = {c: bindparam(f"new_{c}", type_=se.c[c].type) for c in (*sorted(columns), "updated_at")}
    return Statement(update(se).where(se.c.tenant == bindparam("where_tenant"), se.c.entry_id == bindparam("where_entry_id")).values(values))


def _update(uow: UnitOfWork, entry_id: str, changes: dict[str, Any]) -> None:
    columns = {k: v for k, v in changes.items() if k != ASSIGNEES}
    if columns:
        params = {f"new_{k}": v for k, v in columns.items()}
        _update_of(frozenset(columns)).run(uow.conn, {**params, "new_updated_at": uow.ctx.now, "where_tenant": uow.ctx.tenant_id, "where_entry_id": entry_id})
    if ASSIGNEES in changes:
        set_assignees(uow, entry_id, changes[ASSIGNEES], replace_existing=True)


def _insert(uow: UnitOfWork, template: Entry, changes: dict[str, Any]) -> Entry:
    """A new row copied from `template` (an occurrence) with `changes` applied."""
    entry_id = uow.new_id("entry")
    row = {
        "tenant": uow.ctx.tenant_id,
        "entry_id": entry_id,
        "title": template.title,
        "notes": template.notes,
        "status": template.status,
        "scheduled_start": template.scheduled_start,
        "scheduled_end": template.scheduled_end,
        "work_item_id": template.work_item_id,
        "work_item_type": template.work_item_type,
        "is_private": template.is_private,
        "original_entry_id": None,
        "created_at": uow.ctx.now,
        "updated_at": uow.ctx.now,
    }
    row.update({k: v for k, v in changes.items() if k != ASSIGNEES})
    uow.conn.execute(se.insert().values(**row))
    set_assignees(uow, entry_id, changes.get(ASSIGNEES, template.assigned_user_ids), replace_existing=False)
    return entries.load_row(uow, entry_id, for_update=False)


_CLEAR_ASSIGNEES = Statement(delete(sea).where(sea.c.tenant == bindparam("tenant"), sea.c.entry_id == bindparam("entry_id")))


def set_assignees(uow: UnitOfWork, entry_id: str, user_ids: tuple[str, ...] | list[str], *, replace_existing: bool) -> None:
    tenant = uow.ctx.tenant_id
    if replace_existing:
        _CLEAR_ASSIGNEES.run(uow.conn, {"tenant": tenant, "entry_id": entry_id})
    if user_ids:
        now = uow.ctx.now
        insert_rows(uow.conn, sea, [{"tenant": tenant, "entry_id": entry_id, "user_id": u, "created_at": now, "updated_at": now} for u in user_ids])
