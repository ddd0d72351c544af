"""Conflict detection shared by create_entry, assign_user and reschedule.

Two entries conflict when they share an assignee and their windows overlap
strictly; inactive statuses and the target's own series are ignored, and
recurring series are expanded inside the window being checked.
"""
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, all_, and_, any_, bindparam, cast, false, func, literal_column, null, or_, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY

from handlers import entries, recurrence, references
from handlers.errors import Conflict
from handlers.statements import Statement
from handlers.timeutil import iso
from handlers.uow import UnitOfWork
from schemas.tables import schedule_conflicts
from schemas.tables import schedule_entries as se
from schemas.tables import schedule_entry_assignees as sea

# Statuses that no longer hold a slot, in every spelling the PSA writes.
INACTIVE_STATUSES = (
    "cancelled", "canceled", "cancel",
    "completed", "complete", "done",
    "no_show", "no-show", "noshow", "no show",
)  # fmt: skip
SHIFT_HORIZON = timedelta(days=14)


def is_inactive(status: str | None) -> bool:
    return status is not None and status.strip().lower() in INACTIVE_STATUSES


@dataclass(frozen=True)
class Overlap:
    entry_id: str  # a stored entry, or an occurrence's virtual id
    series_id: str  # the stored row behind it (the master for an occurrence)
    user_id: str
    start: datetime
    end: datetime

    def as_detail(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "user_id": self.user_id, "start": iso(self.start), "end": iso(self.end)}


_DAY_S = 86400
# Seconds the SQL filter widens the window by, far above float rounding: it may keep a slot the
# Python check then drops, never the reverse.
FILTER_SLACK_S = 1


def may_overlap_sql(first_start: ColumnElement, first_end: ColumnElement, window_start: ColumnElement, window_end: ColumnElement) -> ColumnElement:
    """`recurrence.may_overlap` as a row filter, so series at other hours are not even sent.

    A slot at the first occurrence's time of day (UTC) on some day D overlaps the
    window when D + tod < end and D + tod + duration > start: the first midnight after
    start - tod - duration must come before end - tod. Computed in float seconds (numeric
    arithmetic costs PostgreSQL more than the rows it saves) on a window widened by
    FILTER_SLACK_S; the Python check still decides.
    """
    epoch = lambda value: func.date_part(_sql("'epoch'"), value)  # noqa: E731
    day, slack = _sql(str(_DAY_S)), _sql(str(FILTER_SLACK_S))
    start = epoch(first_start)
    tod = start - func.floor(start / day) * day
    duration = epoch(first_end) - start
    first_midnight_after = (func.floor((epoch(window_start) - slack - tod - duration) / day) + _sql("1")) * day
    return or_(duration <= _sql("0"), first_midnight_after < epoch(window_end) + slack - tod)


def _sql(constant: str) -> ColumnElement:
    """A constant written into the statement's text: bound as a parameter, each of them would be
    converted and sent with every execution (the conflict query had 30 parameters, 5 of them values)."""
    return literal_column(constant)


def _busy_query(users: ColumnElement, excluded_series: ColumnElement | None) -> Select:
    joined = sea.join(se, and_(se.c.tenant == sea.c.tenant, se.c.entry_id == sea.c.entry_id))
    inactive = _sql("'{" + ",".join(f'"{status}"' for status in INACTIVE_STATUSES) + "}'::text[]")
    active = or_(se.c.status.is_(None), func.lower(func.trim(se.c.status)) != all_(inactive))
    recurring = func.coalesce(se.c.is_recurring, false())
    instant = se.c.scheduled_start.type
    where = [
        sea.c.tenant == bindparam("tenant"),
        users,
        active,
        se.c.scheduled_start < bindparam("end"),
        or_(recurring, se.c.scheduled_end > bindparam("start")),
        or_(
            se.c.scheduled_start.is_(None),
            se.c.scheduled_end.is_(None),
            may_overlap_sql(se.c.scheduled_start, se.c.scheduled_end, bindparam("start", type_=instant), bindparam("end", type_=instant)),
        ),
    ]
    if excluded_series is not None:
        where.append(func.coalesce(se.c.original_entry_id, se.c.entry_id) != excluded_series)
    return select(sea.c.user_id.label("busy_user_id"), *_text_pattern(entries.COLUMNS)).select_from(joined).where(*where)


def _text_pattern(columns: Sequence[ColumnElement]) -> list[ColumnElement]:
    # The pattern comes as text, parsed only for the few rows that pass the time-of-day check.
    return [cast(c, Text).label(c.key) if c.key == "recurrence_pattern" else c for c in columns]


# One statement text whatever the number of users, so it stays prepared.
_GIVEN_USERS = sea.c.user_id == any_(bindparam("user_ids", type_=ARRAY(sea.c.user_id.type)))
_BUSY = {
    excluding: Statement(_busy_query(_GIVEN_USERS, bindparam("series_id") if excluding else None)) for excluding in (False, True)
}

# A stored entry, locked, and the same question about its assignees for a new window, leaving out
# its series: one statement. Its first branch takes the lock before the second reads the conflicts;
# both read one snapshot, taken before any wait for the lock, which loses nothing, as a tenant's
# commands run one at a time.
_target = (
    select(*_text_pattern(entries.COLUMNS))
    .where(se.c.tenant == bindparam("tenant"), se.c.entry_id == bindparam("entry_id"))
    .with_for_update(of=se)
    .cte("target")
)
_ENTRY_AND_BUSY = Statement(
    union_all(
        select(cast(null(), sea.c.user_id.type).label("busy_user_id"), *_target.c),
        _busy_query(
            sea.c.user_id == any_(cast(select(_target.c.assigned_user_ids).scalar_subquery(), ARRAY(sea.c.user_id.type))),
            select(func.coalesce(_target.c.original_entry_id, _target.c.entry_id)).scalar_subquery(),
        ),
    )
)


def busy(uow: UnitOfWork, user_ids: Sequence[str], start: datetime, end: datetime, exclude_series_id: str | None) -> list[Overlap]:
    """(entry or occurrence, user) pairs holding a slot that overlaps [start, end) strictly."""
    if not user_ids:
        return []
    params = {"tenant": uow.ctx.tenant_id, "user_ids": list(user_ids), "start": start, "end": end, "series_id": exclude_series_id}
    return _overlaps(uow, _BUSY[exclude_series_id is not None].rows(uow.conn, params), start, end)


def entry_and_busy(uow: UnitOfWork, entry_id: str, start: datetime, end: datetime) -> tuple[entries.Entry | None, list[Overlap]]:
    """A stored entry, locked, and `busy` for its assignees in [start, end) outside its series."""
    params = {"tenant": uow.ctx.tenant_id, "entry_id": entry_id, "start": start, "end": end}
    rows = _ENTRY_AND_BUSY.rows(uow.conn, params)
    target = next((row for row in rows if row.busy_user_id is None), None)
    if target is None:
        return None, []
    entry = entries.from_row(target)
    if entry.recurrence_pattern is not None:
        entry = replace(entry, recurrence_pattern=json.loads(entry.recurrence_pattern))
    return entry, _overlaps(uow, [row for row in rows if row.busy_user_id is not None], start, end)


def _overlaps(uow: UnitOfWork, rows: list[Any], start: datetime, end: datetime) -> list[Overlap]:
    """A busy query's rows as overlaps of [start, end), series expanded, in order of start."""
    may_overlap = recurrence.slot_filter(start, end)
    found = []
    for row in rows:
        start_at, end_at = row.scheduled_start, row.scheduled_end
        # Most of a technician's series sit at other hours: ruled out before their pattern is parsed.
        if start_at is not None and end_at is not None and not may_overlap(start_at, end_at):
            continue
        entry, user_id = entries.from_row(row), str(row.busy_user_id)
        if entry.recurrence_pattern is not None:
            entry = replace(entry, recurrence_pattern=json.loads(entry.recurrence_pattern))
        series = references.series_of(entry)
        if series is None:
            if entry.scheduled_end > start:
                found.append(Overlap(entry.entry_id, entry.entry_id, user_id, entry.scheduled_start, entry.scheduled_end))
            continue
        for occ in recurrence.expand(series, start, end, references.holidays(uow)):
            found.append(Overlap(recurrence.virtual_id(entry.entry_id, occ), entry.entry_id, user_id, occ, occ + series.duration))
    found.sort(key=lambda o: (o.start, o.entry_id, o.user_id))
    return found


def earliest_free(taken: Sequence[Overlap], start: datetime, duration: timedelta, horizon: timedelta = SHIFT_HORIZON) -> datetime | None:
    """The earliest start at or after `start` whose window overlaps none of `taken`, within the horizon."""
    candidate = start
    for slot in sorted(taken, key=lambda o: o.start):
        if slot.start >= candidate + duration:
            break
        if slot.end > candidate:
            candidate = slot.end
    return candidate if candidate - start <= horizon else None


def resolve(
    uow: UnitOfWork, user_ids: Sequence[str], start: datetime, end: datetime, mode: str, exclude_series_id: str | None,
    *, for_create: bool = False, overlaps: list[Overlap] | None = None,
) -> tuple[datetime, datetime, list[Overlap]]:
    """Apply a conflict mode: the window to use, and the overlaps it still has (override only).
    `overlaps`: `busy` for the window, when the caller read it already."""
    if overlaps is None:
        overlaps = busy(uow, user_ids, start, end, exclude_series_id)
    if not overlaps:
        return start, end, []
    if mode == "fail":
        details = {"conflict_count": len(overlaps), "conflicts": [o.as_detail() for o in overlaps]}
        if for_create:
            details["conflicting_user_ids"] = sorted({o.user_id for o in overlaps})
        raise Conflict("Schedule conflict detected for one or more assignees", details)
    if mode == "override":
        return start, end, overlaps
    duration = end - start
    taken = busy(uow, user_ids, start, start + SHIFT_HORIZON + duration, exclude_series_id)
    shifted = earliest_free(taken, start, duration)
    if shifted is None:
        raise Conflict(
            "Unable to shift entry to a non-conflicting window",
            {"horizon_days": SHIFT_HORIZON.days, "conflict_count": len(overlaps), "conflicts": [o.as_detail() for o in overlaps]},
        )
    return shifted, shifted + duration, []


def record(uow: UnitOfWork, entry_id: str, overlaps: Sequence[Overlap]) -> None:
    """override: one unresolved 'overlap' row per distinct conflicting entry."""
    others = sorted({o.series_id for o in overlaps} - {entry_id})
    if others:
        uow.conn.execute(
            schedule_conflicts.insert(),
            [
                {
                    "tenant": uow.ctx.tenant_id, "conflict_id": uow.new_id("conflict"), "entry_id_1": entry_id,
                    "entry_id_2": other, "conflict_type": "overlap", "resolved": False,
                    "created_at": uow.ctx.now, "updated_at": uow.ctx.now,
                }
                for other in others
            ],
        )  # fmt: skip
