"""Conflict detection shared by create_entry, assign_user and reschedule."""
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, func, or_, select

from handlers.timeutil import iso
from handlers.uow import UnitOfWork
from schemas.tables import schedule_entries as se
from schemas.tables import schedule_entry_assignees as sea

# Statuses that no longer hold a slot, in every spelling the PSA writes.
INACTIVE_STATUSES = (
    "cancelled", "canceled", "cancel",
    "completed", "complete", "done",
    "no_show", "no-show", "noshow", "no show",
)  # fmt: skip


def is_inactive(status: str | None) -> bool:
    return status is not None and status.strip().lower() in INACTIVE_STATUSES


@dataclass(frozen=True)
class Overlap:
    entry_id: str
    user_id: str
    start: datetime
    end: datetime

    def as_detail(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "user_id": self.user_id, "start": iso(self.start), "end": iso(self.end)}


def find_overlaps(
    uow: UnitOfWork,
    user_ids: Sequence[str],
    start: datetime,
    end: datetime,
    exclude_series_id: str | None,
) -> list[Overlap]:
    """(entry, user) pairs whose window overlaps [start, end) strictly."""
    if not user_ids:
        return []
    query = (
        select(sea.c.entry_id, sea.c.user_id, se.c.scheduled_start, se.c.scheduled_end)
        .select_from(sea.join(se, and_(se.c.tenant == sea.c.tenant, se.c.entry_id == sea.c.entry_id)))
        .where(
            sea.c.tenant == uow.ctx.tenant_id,
            sea.c.user_id.in_(list(user_ids)),
            se.c.scheduled_start < end,
            se.c.scheduled_end > start,
            func.coalesce(se.c.is_recurring, false()).is_(False),
            or_(
                se.c.status.is_(None),
                func.lower(func.trim(se.c.status)).not_in(INACTIVE_STATUSES),
            ),
        )
        .order_by(se.c.scheduled_start, sea.c.entry_id, sea.c.user_id)
    )
    if exclude_series_id is not None:
        query = query.where(func.coalesce(se.c.original_entry_id, se.c.entry_id) != exclude_series_id)
    return [Overlap(*row) for row in uow.conn.execute(query)]


def conflict_details(overlaps: Sequence[Overlap]) -> dict[str, Any]:
    return {"conflict_count": len(overlaps), "conflicts": [o.as_detail() for o in overlaps]}
