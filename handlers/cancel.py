"""scheduling.cancel: mark an entry (or part of a series) cancelled; the row is kept."""
from typing import Any

from handlers import appointment_events, status_change
from handlers.status_change import StatusChange
from handlers.uow import UnitOfWork

PERMISSION = "user_schedule:update"


def parse(data: dict[str, Any]) -> StatusChange:
    return status_change.parse(data, "reason")


def handle(uow: UnitOfWork, cmd: StatusChange) -> dict[str, Any]:
    return status_change.change(
        uow, cmd, "cancelled", "Cancellation reason: ",
        lambda entry: appointment_events.canceled(uow, entry, cmd.recurrence_scope, cmd.detail),
        {"recurrence_scope": cmd.recurrence_scope, "reason": cmd.detail},
    )  # fmt: skip
