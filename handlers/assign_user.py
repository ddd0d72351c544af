"""scheduling.assign_user: schedule one technician on a ticket or project task."""
from typing import Any

from handlers import creation, validation
from handlers.creation import NewEntry
from handlers.uow import UnitOfWork

PERMISSION = "user_schedule:create"
DEFAULT_TITLE = "Scheduled work"


def parse(data: dict[str, Any]) -> NewEntry:
    start, end = validation.window(data["window"])
    return NewEntry(
        assigned_user_ids=[data["user_id"]],
        title=validation.text(data["title"], "input.title") or DEFAULT_TITLE,
        start=start,
        end=end,
        timezone=data["window"].get("timezone"),
        link=data["link"],
        notes=data["notes"],
        is_private=False,
        recurrence=None,
        conflict_mode=data["conflict_mode"],
    )


def handle(uow: UnitOfWork, cmd: NewEntry) -> dict[str, Any]:
    entry, _ = creation.create(uow, cmd)
    return {
        "schedule_event_id": entry.entry_id,
        "assigned_user_id": cmd.assigned_user_ids[0],
        "start": entry.scheduled_start,
        "end": entry.scheduled_end,
    }
