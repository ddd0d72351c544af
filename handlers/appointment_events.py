"""APPOINTMENT_* events raised by handlers (payloads as the PSA's subscribers read them).

Only appointment-like entries (work item `ticket` or `appointment_request`) raise them.
"""
from datetime import datetime
from typing import Any

from handlers.entries import Entry
from handlers.timeutil import iso
from handlers.uow import Event, UnitOfWork


def _event(uow: UnitOfWork, event_type: str, entry: Entry, idempotency_key: str, **fields: Any) -> Event:
    actor = uow.actor
    payload = {
        "tenantId": uow.ctx.tenant_id,
        "occurredAt": iso(uow.ctx.now),
        "actorUserId": actor.user_id if actor else None,
        "actorType": "USER" if actor else "SYSTEM",
        "idempotencyKey": idempotency_key,
        "appointmentId": entry.entry_id,
        "ticketId": entry.ticket_id,
        **fields,
    }
    return Event(event_type=event_type, series_id=entry.series_id, payload=payload)


def created(uow: UnitOfWork, entry: Entry, timezone: str | None) -> Event:
    single = entry.assigned_user_ids[0] if len(entry.assigned_user_ids) == 1 else None
    return _event(
        uow, "APPOINTMENT_CREATED", entry, f"appointment_created:{entry.entry_id}",
        startAt=iso(entry.scheduled_start), endAt=iso(entry.scheduled_end), timezone=timezone or "UTC",
        assigneeId=single, assigneeType="user" if single else None,
        createdByUserId=uow.actor.user_id if uow.actor else None, createdAt=iso(uow.ctx.now), location=None,
    )  # fmt: skip


def assigned(uow: UnitOfWork, entry: Entry, user_id: str, previous: tuple[str, ...], scope: str) -> Event:
    previous_one = previous[0] if len(previous) == 1 else None
    return _event(
        uow, "APPOINTMENT_ASSIGNED", entry, f"appointment_assigned:{entry.entry_id}:{user_id}:{scope}",
        previousAssigneeId=previous_one, previousAssigneeType="user" if previous_one else None,
        newAssigneeId=user_id, newAssigneeType="user", assignedAt=iso(uow.ctx.now),
    )  # fmt: skip


def rescheduled(uow: UnitOfWork, before: Entry, after: Entry, start: datetime, end: datetime, timezone: str | None, reason: str | None) -> Event:
    new_start, new_end = iso(start), iso(end)
    return _event(
        uow, "APPOINTMENT_RESCHEDULED", after, f"appointment_rescheduled:{after.entry_id}:{new_start}:{new_end}",
        previousStartAt=iso(before.scheduled_start), previousEndAt=iso(before.scheduled_end),
        newStartAt=new_start, newEndAt=new_end, timezone=timezone or "UTC",
        rescheduledAt=iso(uow.ctx.now), reason=reason,
    )  # fmt: skip


def canceled(uow: UnitOfWork, entry: Entry, scope: str, reason: str | None) -> Event:
    return _event(
        uow, "APPOINTMENT_CANCELED", entry, f"appointment_canceled:{entry.entry_id}:{scope}:{reason or ''}",
        canceledAt=iso(uow.ctx.now), reason=reason,
    )  # fmt: skip


def completed(uow: UnitOfWork, entry: Entry, scope: str, outcome: str | None) -> Event:
    return _event(
        uow, "APPOINTMENT_COMPLETED", entry, f"appointment_completed:{entry.entry_id}:{scope}:{outcome or ''}",
        completedAt=iso(uow.ctx.now), outcome=outcome,
    )  # fmt: skip


def no_show(uow: UnitOfWork, entry: Entry, scope: str, party: str) -> Event:
    return _event(
        uow, "APPOINTMENT_NO_SHOW", entry, f"appointment_no_show:{entry.entry_id}:{scope}:{party}",
        markedAt=iso(uow.ctx.now), party=party,
    )  # fmt: skip
