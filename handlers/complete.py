"""scheduling.complete: mark an entry (or part of a series) completed; the row is kept."""
from typing import Any

from handlers import appointment_events, status_change
from handlers.status_change import StatusChange
from handlers.uow import UnitOfWork

PERMISSION = "user_schedule:update"


def parse(data: dict[str, Any]) -> StatusChange:
    return status_change.parse(data, "outcome")


def handle(uow: UnitOfWork, cmd: StatusChange) -> dict[str, Any]:
    return status_change.change(
        uow, cmd, "completed", "Completion outcome: ",
        lambda entry: appointment_events.completed(uow, entry, cmd.recurrence_scope, cmd.detail),
        {"completed_at": uow.ctx.now, "outcome": cmd.detail},
    )  # fmt: skip
