"""scheduling.reschedule: move an entry (or part of a series) to a new window."""
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handlers import appointment_events, audit, conflicts, references, validation
from handlers.entries import Entry, append_notes
from handlers.errors import NotFound
from handlers.uow import UnitOfWork

PERMISSION = "user_schedule:update"
RESCHEDULED = "APPOINTMENT_RESCHEDULED"


@dataclass(frozen=True)
class Reschedule:
    entry_ref: references.EntryRef
    start: datetime
    end: datetime
    timezone: str | None
    conflict_mode: str
    recurrence_scope: str
    reason: str | None
    note: str | None


def parse(data: dict[str, Any]) -> Reschedule:
    start, end = validation.window(data["window"])
    return Reschedule(
        entry_ref=references.parse(data["entry_id"], "input.entry_id"),
        start=start,
        end=end,
        timezone=data["window"].get("timezone"),
        conflict_mode=data["conflict_mode"],
        recurrence_scope=data["recurrence_scope"],
        reason=validation.text(data.get("reason"), "input.reason"),
        note=validation.text(data.get("note"), "input.note"),
    )


def _load(uow: UnitOfWork, cmd: Reschedule) -> tuple[Entry | None, list[conflicts.Overlap] | None]:
    """The entry, locked, and for a stored one the overlaps of the new window, asked for together:
    one statement. An occurrence needs its series read before its conflicts can be asked for."""
    if cmd.entry_ref.occurrence_ms is not None:
        return references.load(uow, cmd.entry_ref, for_update=True), None
    return conflicts.entry_and_busy(uow, cmd.entry_ref.master_id, cmd.start, cmd.end)


def handle(uow: UnitOfWork, cmd: Reschedule) -> dict[str, Any]:
    before, overlaps = _load(uow, cmd)
    if before is None:
        raise NotFound("Schedule entry not found", {"entry_id": cmd.entry_ref.text})
    references.check_scope(before, cmd.recurrence_scope)
    start, end, overlaps = conflicts.resolve(
        uow, before.assigned_user_ids, cmd.start, cmd.end, cmd.conflict_mode, before.series_id, overlaps=overlaps
    )

    output = {
        "entry_id": cmd.entry_ref.text,
        "updated_entry_id": before.entry_id,
        "previous_start": before.scheduled_start,
        "previous_end": before.scheduled_end,
        "new_start": start,
        "new_end": end,
        "assigned_user_ids": list(before.assigned_user_ids),
        "conflict_mode": cmd.conflict_mode,
        "conflicts_detected": len(overlaps),
        "recurrence_scope": cmd.recurrence_scope,
        "event_type": None,
    }
    if (before.scheduled_start, before.scheduled_end) == (start, end):
        return output

    notes = append_notes(before.notes, [cmd.reason and f"Reschedule reason: {cmd.reason}", cmd.note])
    after = references.apply(uow, before, cmd.recurrence_scope, {"scheduled_start": start, "scheduled_end": end, "notes": notes})
    conflicts.record(uow, after.entry_id, overlaps)
    output["updated_entry_id"] = after.entry_id
    audit.record(
        uow,
        after.entry_id,
        {
            "entry_id": cmd.entry_ref.text,
            "updated_entry_id": after.entry_id,
            "before": {"scheduled_start": before.scheduled_start, "scheduled_end": before.scheduled_end},
            "after": {"scheduled_start": start, "scheduled_end": end},
            "recurrence_scope": cmd.recurrence_scope,
            "conflict_mode": cmd.conflict_mode,
        },
        reason=cmd.reason,
        note=cmd.note,
    )
    if after.appointment_like:
        uow.emit(appointment_events.rescheduled(uow, before, after, start, end, cmd.timezone, cmd.reason))
        output["event_type"] = RESCHEDULED
    return output
