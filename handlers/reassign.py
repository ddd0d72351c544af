"""scheduling.reassign: replace or extend who is assigned to an entry."""
from dataclasses import dataclass
from typing import Any

from handlers import actors, appointment_events, audit, references, validation
from handlers.entries import append_notes
from handlers.errors import NotFound
from handlers.uow import UnitOfWork

PERMISSION = "user_schedule:update"


@dataclass(frozen=True)
class Reassign:
    entry_ref: references.EntryRef
    assigned_user_ids: list[str]
    mode: str
    recurrence_scope: str
    no_op_if_already_assigned: bool
    reason: str | None
    comment: str | None


def parse(data: dict[str, Any]) -> Reassign:
    return Reassign(
        entry_ref=references.parse(data["entry_id"], "input.entry_id"),
        assigned_user_ids=validation.unique_ids(data["assigned_user_ids"], "input.assigned_user_ids"),
        mode=data["mode"],
        recurrence_scope=data["recurrence_scope"],
        no_op_if_already_assigned=data["no_op_if_already_assigned"],
        reason=validation.text(data["reason"], "input.reason"),
        comment=validation.text(data["comment"], "input.comment"),
    )


def handle(uow: UnitOfWork, cmd: Reassign) -> dict[str, Any]:
    # Asked before the entry is read: the answer comes back with the entry, a round trip less.
    asked = actors.ask_technicians(uow, cmd.assigned_user_ids)
    before = references.load(uow, cmd.entry_ref, for_update=True)
    found = actors.technicians(asked)
    if before is None:
        raise NotFound("Schedule entry not found", {"entry_id": cmd.entry_ref.text})
    references.check_scope(before, cmd.recurrence_scope)
    actors.check_technicians(found, cmd.assigned_user_ids)
    previous = before.assigned_user_ids
    wanted = cmd.assigned_user_ids if cmd.mode == "replace" else [*previous, *(u for u in cmd.assigned_user_ids if u not in previous)]
    output = {
        "entry_id": cmd.entry_ref.text,
        "updated_entry_id": before.entry_id,
        "previous_assigned_user_ids": list(previous),
        "assigned_user_ids": list(previous),
        "changed": False,
        "recurrence_scope": cmd.recurrence_scope,
        "events_emitted": 0,
    }
    if set(wanted) == set(previous) and cmd.no_op_if_already_assigned:
        return output

    notes = append_notes(before.notes, [cmd.reason and f"Reassign reason: {cmd.reason}", cmd.comment])
    after = references.apply(uow, before, cmd.recurrence_scope, {"assigned_user_ids": wanted, "notes": notes})
    newly = [u for u in after.assigned_user_ids if u not in previous]
    if after.appointment_like:
        for user_id in newly:
            uow.emit(appointment_events.assigned(uow, after, user_id, previous, cmd.recurrence_scope))
    events = len(newly) if after.appointment_like else 0
    audit.record(
        uow, after.entry_id,
        {"entry_id": cmd.entry_ref.text, "updated_entry_id": after.entry_id, "previous_assigned_user_ids": list(previous),
         "assigned_user_ids": list(after.assigned_user_ids), "recurrence_scope": cmd.recurrence_scope, "mode": cmd.mode},
        reason=cmd.reason, comment=cmd.comment, events_emitted=events,
    )  # fmt: skip
    output.update(updated_entry_id=after.entry_id, assigned_user_ids=list(after.assigned_user_ids), changed=True, events_emitted=events)
    return output
