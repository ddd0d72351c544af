"""cancel, complete and no_show: a status transition under an edit scope, the row kept."""
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handlers import audit, references, validation
from handlers.entries import Entry, append_notes
from handlers.errors import NotFound
from handlers.uow import Event, UnitOfWork

# Every spelling that reads as each written status.
READS_AS = {
    "cancelled": {"cancelled", "canceled", "cancel"},
    "completed": {"completed", "complete", "done"},
    "no_show": {"no_show", "no-show", "noshow", "no show"},
}


def reads_as(status: str | None, canonical: str) -> bool:
    return status is not None and status.strip().lower() in READS_AS[canonical]


@dataclass(frozen=True)
class StatusChange:
    entry_ref: references.EntryRef
    recurrence_scope: str
    detail: str | None  # the reason, outcome or party
    note: str | None


def parse(data: dict[str, Any], detail_field: str) -> StatusChange:
    detail = data[detail_field]
    return StatusChange(
        entry_ref=references.parse(data["entry_id"], "input.entry_id"),
        recurrence_scope=data["recurrence_scope"],
        detail=detail if detail_field == "party" else validation.text(detail, f"input.{detail_field}"),
        note=validation.text(data["note"], "input.note"),
    )


def change(
    uow: UnitOfWork,
    cmd: StatusChange,
    status: str,
    note_prefix: str | None,
    event: Callable[[Entry], Event],
    output: dict[str, Any],
) -> dict[str, Any]:
    """Set `status` on what the scope selects; raises the event only on a real transition."""
    before = references.load(uow, cmd.entry_ref, for_update=True)
    if before is None:
        raise NotFound("Schedule entry not found", {"entry_id": cmd.entry_ref.text})
    references.check_scope(before, cmd.recurrence_scope)
    result = {"entry_id": cmd.entry_ref.text, "updated_entry_id": before.entry_id, "status": status, "event_type": None, **output}
    if reads_as(before.status, status):
        return result
    parts = [note_prefix and cmd.detail and f"{note_prefix}{cmd.detail}", cmd.note]
    after = references.apply(uow, before, cmd.recurrence_scope, {"status": status, "notes": append_notes(before.notes, parts)})
    audit.record(
        uow, after.entry_id,
        {"entry_id": cmd.entry_ref.text, "updated_entry_id": after.entry_id, "before": {"status": before.status},
         "after": {"status": status}, "recurrence_scope": cmd.recurrence_scope, **output},
        detail=cmd.detail, note=cmd.note,
    )  # fmt: skip
    result["updated_entry_id"] = after.entry_id
    if after.appointment_like:
        raised = event(after)
        uow.emit(raised)
        result["event_type"] = raised.event_type
    return result
