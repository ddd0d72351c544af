"""APPOINTMENT_* events raised by handlers (payloads as the PSA's subscribers read them)."""
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


def rescheduled(uow: UnitOfWork, before: Entry, after: Entry, timezone: str | None, reason: str | None) -> Event:
    new_start, new_end = iso(after.scheduled_start), iso(after.scheduled_end)
    return _event(
        uow,
        "APPOINTMENT_RESCHEDULED",
        after,
        f"appointment_rescheduled:{after.entry_id}:{new_start}:{new_end}",
        previousStartAt=iso(before.scheduled_start),
        previousEndAt=iso(before.scheduled_end),
        newStartAt=new_start,
        newEndAt=new_end,
        timezone=timezone or "UTC",
        rescheduledAt=iso(uow.ctx.now),
        reason=reason,
    )
