"""scheduling.create_entry: a new entry (optionally recurring) for one or more technicians."""
from typing import Any

from handlers import creation, validation
from handlers.creation import NewEntry
from handlers.uow import UnitOfWork

PERMISSION = "user_schedule:create"


def parse(data: dict[str, Any]) -> NewEntry:
    start, end = validation.window(data["window"])
    return NewEntry(
        assigned_user_ids=validation.unique_ids(data["assigned_user_ids"], "input.assigned_user_ids"),
        title=validation.text(data["title"], "input.title"),
        start=start,
        end=end,
        timezone=data["window"].get("timezone"),
        link=data["link"],
        notes=data["notes"],
        is_private=data["is_private"],
        recurrence=creation.pattern(data["recurrence"], start, "input.recurrence"),
        conflict_mode=data["conflict_mode"],
    )


def handle(uow: UnitOfWork, cmd: NewEntry) -> dict[str, Any]:
    entry, _ = creation.create(uow, cmd)
    return {
        "entry_id": entry.entry_id,
        "assigned_user_ids": list(cmd.assigned_user_ids),
        "start": entry.scheduled_start,
        "end": entry.scheduled_end,
        "work_item_id": entry.work_item_id,
        "work_item_type": entry.work_item_type,
    }
