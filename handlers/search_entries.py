"""scheduling.search_entries: filter the schedule, expand series, page by keyset."""
import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, cast, exists, false, func, literal, or_, tuple_

from handlers import recurrence, references, validation
from handlers.entries import Entry, load_rows, redacted, sees_details, summary
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
    filters = []
    if cmd.assigned_user_ids:
        filters.append(exists().where(sea.c.tenant == se.c.tenant, sea.c.entry_id == se.c.entry_id, sea.c.user_id.in_(cmd.assigned_user_ids)))
    if cmd.work_item:
        filters += [se.c.work_item_type == cmd.work_item["type"], se.c.work_item_id == cmd.work_item["id"]]
    if cmd.statuses:
        filters.append(func.lower(func.trim(se.c.status)).in_(cmd.statuses))
    if cmd.query:
        pattern = _like(cmd.query)
        filters.append(or_(se.c.title.ilike(pattern, escape="\\"), func.coalesce(se.c.notes, "").ilike(pattern, escape="\\")))
        if not actor.may("user_schedule:update"):
            # Text never matches what the actor may not see in full.
            assigned_to_actor = exists().where(sea.c.tenant == se.c.tenant, sea.c.entry_id == se.c.entry_id, sea.c.user_id == actor.user_id)
            filters.append(or_(se.c.is_private.is_(False), assigned_to_actor))
    is_master = and_(func.coalesce(se.c.is_recurring, false()), se.c.original_entry_id.is_(None))
    sort_start = func.coalesce(se.c.scheduled_start, literal(FAR_FUTURE))
    # Ids compare as C-collated text, as Python compares them, so stored rows and
    # virtual occurrence ids page in one order.
    sort_id = cast(se.c.entry_id, Text).collate("C")
    stored = list(filters)
    if cmd.start is not None:
        stored.append(se.c.scheduled_end > cmd.start)
    if cmd.end is not None:
        stored.append(se.c.scheduled_start < cmd.end)
    if cmd.after is not None:
        stored.append(tuple_(sort_start, sort_id) > tuple_(literal(cmd.after[0]), literal(cmd.after[1], Text)))
    if cmd.expand:
        stored.append(~is_master)
    found = load_rows(uow, stored, [sort_start, sort_id], limit=cmd.limit + 1)
    if cmd.expand:
        # Spelled as the partial index idx_schedule_entries_recurring_masters is, so it serves the query.
        masters = and_(se.c.is_recurring, se.c.original_entry_id.is_(None))
        found += _occurrences(uow, filters + [masters, se.c.scheduled_start < cmd.end], cmd)
        found.sort(key=_key)
    page, more = found[: cmd.limit], len(found) > cmd.limit
    return {
        "entries": [summary(e if sees_details(actor, e) else redacted(e)) for e in page],
        "count": len(page),
        "next_cursor": _encode_cursor(_key(page[-1])) if more else None,
    }


def _occurrences(uow: UnitOfWork, where: list, cmd: Search) -> list[Entry]:
    """Every occurrence inside the window of the series that match the filters, past the cursor."""
    out = []
    for master in load_rows(uow, where, [se.c.entry_id]):
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
