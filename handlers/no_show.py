"""scheduling.no_show: mark that the customer or the agent did not show up; the row is kept."""
from typing import Any

from handlers import appointment_events, status_change
from handlers.status_change import StatusChange
from handlers.uow import UnitOfWork

PERMISSION = "user_schedule:update"


def parse(data: dict[str, Any]) -> StatusChange:
    return status_change.parse(data, "party")


def handle(uow: UnitOfWork, cmd: StatusChange) -> dict[str, Any]:
    return status_change.change(
        uow, cmd, "no_show", None,
        lambda entry: appointment_events.no_show(uow, entry, cmd.recurrence_scope, cmd.detail),
        {"marked_at": uow.ctx.now, "party": cmd.detail},
    )  # fmt: skip
