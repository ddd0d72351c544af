"""scheduling.search_entries: filter the schedule, expand series, page by keyset."""
import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Text, and_, any_, bindparam, cast, exists, false, func, literal, or_, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY

from handlers import recurrence, references, validation
from handlers.entries import COLUMNS, Entry, from_row, redacted, sees_details, summary
from handlers.statements import Statement
from handlers.status_change import READS_AS
from handlers.uow import UnitOfWork
from schemas.tables import schedule_entries as se
from schemas.tables import schedule_entry_assignees as sea

PERMISSION = "user_schedule:read"
# Time-less entries sort after every dated one.
FAR_FUTURE = datetime.fromisoformat("9999-12-31T00:00:00+00:00")


@dataclass(frozen=True)
class Search:
    start: datetime | None
    end: datetime | None
    assigned_user_ids: list[str] | None
    work_item: dict[str, str] | None
    statuses: list[str] | None  # every spelling to match, lower-cased
    query: str | None
    expand: bool
    limit: int
    after: tuple[datetime, str] | None  # the cursor: (start, entry id) of the last entry returned


def _statuses(values: list[str]) -> list[str]:
    spellings: set[str] = set()
    for i, value in enumerate(values):
        wanted = value.strip().lower()
        if not wanted:
            raise validation.invalid(f"input.status[{i}]", "must not be blank")
        spellings |= next((group | {c} for c, group in READS_AS.items() if wanted in group or wanted == c), {wanted})
    return sorted(spellings)


def _cursor(value: str | None) -> tuple[datetime, str] | None:
    if value is None:
        return None
    try:
        start, entry_id = json.loads(base64.urlsafe_b64decode(value.encode()))
        return datetime.fromisoformat(start), str(entry_id)
    except (ValueError, TypeError, binascii.Error):
        raise validation.invalid("input.cursor", "is not a cursor this service returned") from None


def _encode_cursor(key: tuple[datetime, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps([key[0].isoformat(), key[1]]).encode()).decode()


def parse(data: dict[str, Any]) -> Search:
    window = data["window"] or {}
    start, end = window.get("start"), window.get("end")
    if start is not None and end is not None and not start < end:
        raise validation.invalid("input.window", "window.start must be before window.end")
    if not 1 <= data["limit"] <= 100:
        raise validation.invalid("input.limit", "must be between 1 and 100")
    query = validation.text(data["query"], "input.query")
    assigned = data["assigned_user_ids"] or None
    statuses = _statuses(data["status"]) if data["status"] else None
    if start is None and end is None and not assigned and data["work_item"] is None and not statuses and query is None:
        raise validation.invalid("input", "At least one search criterion is required")
    expand = data["expand_recurring"]
    return Search(
        start=start, end=end, assigned_user_ids=assigned, work_item=data["work_item"], statuses=statuses, query=query,
        expand=(start is not None and end is not None) if expand is None else expand and start is not None and end is not None,
        limit=data["limit"], after=_cursor(data["cursor"]),
    )  # fmt: skip


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _key(entry: Entry) -> tuple[datetime, str]:
    return (entry.scheduled_start or FAR_FUTURE, entry.entry_id)


def handle(uow: UnitOfWork, cmd: Search) -> dict[str, Any]:
    actor = uow.actor
    shape = _Shape(
        assigned=bool(cmd.assigned_user_ids), work_item=bool(cmd.work_item), statuses=bool(cmd.statuses), query=bool(cmd.query),
        # Text never matches what the actor may not see in full.
        query_sees_private=actor.may("user_schedule:update"), start=cmd.start is not None, end=cmd.end is not None,
        after=cmd.after is not None, expand=cmd.expand,
    )  # fmt: skip
    work_item, after = cmd.work_item or {}, cmd.after or (None, None)
    params = {
        "tenant": uow.ctx.tenant_id, "actor": actor.user_id, "limit": cmd.limit + 1, "assigned": cmd.assigned_user_ids,
        "start": cmd.start, "end": cmd.end, "pattern": cmd.query and _like(cmd.query), "statuses": cmd.statuses,
        "work_item_type": work_item.get("type"), "work_item_id": work_item.get("id"), "after_start": after[0], "after_id": after[1],
    }  # fmt: skip
    statements = _statements(shape)
    found = [from_row(r) for r in statements.stored.rows(uow.conn, params)]
    if statements.masters is not None:
        found += _occurrences(uow, statements.masters.rows(uow.conn, params), cmd)
        found.sort(key=_key)
    page, more = found[: cmd.limit], len(found) > cmd.limit
    return {
        "entries": [summary(e if sees_details(actor, e) else redacted(e)) for e in page],
        "count": len(page),
        "next_cursor": _encode_cursor(_key(page[-1])) if more else None,
    }


@dataclass(frozen=True)
class _Shape:
    """Which criteria a search gives: the statements differ by these alone, so each shape is compiled once."""

    assigned: bool
    work_item: bool
    statuses: bool
    query: bool
    query_sees_private: bool
    start: bool
    end: bool
    after: bool
    expand: bool


@dataclass(frozen=True)
class _Statements:
    stored: Statement
    # The series whose occurrences may fall in the window (expanding searches only).
    masters: Statement | None


@cache
def _statements(shape: _Shape) -> _Statements:
    """The shape's statements, built and compiled on its first search."""
    filters: list[Any] = [se.c.tenant == bindparam("tenant")]
    if shape.assigned:
        given = sea.c.user_id == any_(bindparam("assigned", type_=ARRAY(sea.c.user_id.type)))
        filters.append(exists().where(sea.c.tenant == se.c.tenant, sea.c.entry_id == se.c.entry_id, given))
    if shape.work_item:
        filters += [se.c.work_item_type == bindparam("work_item_type"), se.c.work_item_id == bindparam("work_item_id")]
    if shape.statuses:
        filters.append(func.lower(func.trim(se.c.status)) == any_(bindparam("statuses", type_=ARRAY(Text))))
    if shape.query:
        pattern = bindparam("pattern", type_=Text)
        filters.append(or_(se.c.title.ilike(pattern, escape="\\"), func.coalesce(se.c.notes, "").ilike(pattern, escape="\\")))
        if not shape.query_sees_private:
            assigned_to_actor = exists().where(sea.c.tenant == se.c.tenant, sea.c.entry_id == se.c.entry_id, sea.c.user_id == bindparam("actor"))
            filters.append(or_(se.c.is_private.is_(False), assigned_to_actor))
    is_master = and_(func.coalesce(se.c.is_recurring, false()), se.c.original_entry_id.is_(None))
    sort_start = func.coalesce(se.c.scheduled_start, literal(FAR_FUTURE))
    # Ids compare as C-collated text, as Python compares them, so stored rows and
    # virtual occurrence ids page in one order.
    sort_id = cast(se.c.entry_id, Text).collate("C")
    end = bindparam("end", type_=se.c.scheduled_start.type)
    stored = list(filters)
    if shape.start:
        stored.append(se.c.scheduled_end > bindparam("start", type_=se.c.scheduled_end.type))
    if shape.end:
        stored.append(se.c.scheduled_start < end)
    if shape.after:
        after = tuple_(bindparam("after_start", type_=se.c.scheduled_start.type), bindparam("after_id", type_=Text))
        stored.append(tuple_(sort_start, sort_id) > after)
    if shape.expand:
        stored.append(~is_master)
    found = select(*COLUMNS).where(*stored).order_by(sort_start, sort_id).limit(bindparam("limit"))
    if not shape.expand:
        return _Statements(Statement(found), None)
    # Spelled as the partial index idx_schedule_entries_recurring_masters is, so it serves the query.
    masters = and_(se.c.is_recurring, se.c.original_entry_id.is_(None))
    series = select(*COLUMNS).where(*filters, masters, se.c.scheduled_start < end)
    return _Statements(Statement(found), Statement(series.order_by(se.c.entry_id)))


def _occurrences(uow: UnitOfWork, masters: list[Any], cmd: Search) -> list[Entry]:
    """Every occurrence inside the window of the series that match the filters, past the cursor."""
    out = []
    for master in map(from_row, masters):
        series = references.series_of(master)
        if series is None:
            continue
        for start in recurrence.expand(series, cmd.start, cmd.end, references.holidays(uow)):
            entry = references.occurrence(master, series, start)
            if cmd.after is None or _key(entry) > cmd.after:
                out.append(entry)
                if len(out) > cmd.limit * 4:
                    break
    return out
