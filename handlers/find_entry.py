"""scheduling.find_entry: one entry by id or occurrence id, redacted as the actor may see it."""
from dataclasses import dataclass
from typing import Any

from handlers import references
from handlers.entries import redacted, sees_details, summary
from handlers.errors import PermissionDenied
from handlers.uow import UnitOfWork

PERMISSION = "user_schedule:read"


@dataclass(frozen=True)
class FindEntry:
    entry_ref: references.EntryRef
    include_private_details: bool


def parse(data: dict[str, Any]) -> FindEntry:
    return FindEntry(
        entry_ref=references.parse(data["entry_id"], "input.entry_id"),
        include_private_details=data["include_private_details"],
    )


def handle(uow: UnitOfWork, cmd: FindEntry) -> dict[str, Any]:
    entry = references.load(uow, cmd.entry_ref, for_update=False)
    if entry is None:
        return {"found": False, "entry": None}
    visible = sees_details(uow.actor, entry)
    if cmd.include_private_details and not visible:
        raise PermissionDenied(
            "include_private_details requires being assigned to the entry or user_schedule:update",
            {"entry_id": cmd.entry_ref.text},
        )
    return {"found": True, "entry": summary(entry if visible else redacted(entry))}
