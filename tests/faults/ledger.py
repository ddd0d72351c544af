"""A stream of commands whose outcome is known in advance, and the check that it happened exactly.

Each unit creates an appointment for a technician, linked to a ticket, on a day
of its own and clear of the weekly standup; reschedules it; and for a third of
the units cancels it. No command can conflict with another, so the final rows
and the events follow from the stream alone. Each tenant's commands go to one
partition, so they keep their order.
"""
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, text

from consumer.demo import DemoTenant
from handlers.ids import derive_id
from handlers.timeutil import iso
from schemas import tables as t


@dataclass
class Ledger:
    tenants: list[DemoTenant]
    commands: list[dict[str, Any]] = field(default_factory=list)
    # entry_id -> (start, end, cancelled)
    expected: dict[str, tuple[datetime, datetime, bool]] = field(default_factory=dict)
    events: int = 0

    def partition_of(self, command: dict[str, Any]) -> int:
        """One tenant per partition, so every partition has work (the key hash would not promise that)."""
        return [x.tenant for x in self.tenants].index(command["tenant_id"])

    @property
    def command_ids(self) -> set[str]:
        return {c["command_id"] for c in self.commands}


def build(tenants: list[DemoTenant], units_per_tenant: int) -> Ledger:
    ledger = Ledger(tenants)
    per_tenant: list[list[dict[str, Any]]] = []
    for tenant in tenants:
        actor = {"user_id": tenant.id("dispatcher")}
        stream = []
        for u in range(units_per_tenant):
            def cmd(action: str, **input_: Any) -> dict[str, Any]:
                return {"command_id": str(uuid.uuid4()), "tenant_id": tenant.tenant, "action": action, "actor": actor, "input": input_}

            day = tenant.base + timedelta(days=30 + u)
            create = cmd(
                "scheduling.create_entry", title=f"Visit {u}", assigned_user_ids=[tenant.id("tech1")],
                window={"start": iso(day + timedelta(hours=17)), "end": iso(day + timedelta(hours=18))},
                link={"type": "ticket", "id": tenant.id("ticket1")},
            )  # fmt: skip
            entry_id = derive_id(create["command_id"], "entry", 0)
            start, end = day + timedelta(hours=19), day + timedelta(hours=20, minutes=30)
            stream += [create, cmd("scheduling.reschedule", entry_id=entry_id, window={"start": iso(start), "end": iso(end)})]
            cancelled = u % 3 == 0
            if cancelled:
                stream.append(cmd("scheduling.cancel", entry_id=entry_id, reason="no longer needed"))
            ledger.expected[entry_id] = (start, end, cancelled)
            # created + assigned, rescheduled, cancelled
            ledger.events += 3 + cancelled
        per_tenant.append(stream)
    # Round robin over tenants, so every partition is busy all the time.
    for i in range(max(map(len, per_tenant))):
        ledger.commands += [stream[i] for stream in per_tenant if i < len(stream)]
    return ledger


def in_flight(owner: Engine, group: str | None = None) -> int:
    """Messages recorded as started by a batch that has not committed: in claims and rows of their own."""
    where = "" if group is None else " where consumer_group = :g"
    with owner.connect() as conn:
        return conn.execute(
            text(f"select (select count(*) from delivery_attempts{where}) + (select coalesce(sum(cardinality(offsets)), 0) from delivery_claims{where})"),
            {"g": group},
        ).scalar()


def applied(owner: Engine, ledger: Ledger) -> int:
    """How many of the ledger's commands have a recorded result."""
    with owner.connect() as conn:
        return conn.execute(
            select(t.command_inbox.c.command_id).where(t.command_inbox.c.tenant.in_([x.tenant for x in ledger.tenants]))
        ).all().__len__()


def check(
    owner: Engine, ledger: Ledger, events: list[dict[str, Any]], replies: dict[str, list[dict[str, Any]]],
    skipped: frozenset[str] = frozenset(), skipped_events: int = 0,
) -> None:
    """Exactly one result per command, rows as the stream implies, every event
    published at least once, none unexpected, in commit order per appointment.
    `skipped` are commands expected to be dead-lettered instead, and
    `skipped_events` the events they would have raised."""
    tenants = [x.tenant for x in ledger.tenants]
    with owner.connect() as conn:
        inbox = conn.execute(select(t.command_inbox.c.command_id, t.command_inbox.c.status).where(t.command_inbox.c.tenant.in_(tenants))).all()
        rows = {
            r.entry_id: r
            for r in conn.execute(
                select(t.schedule_entries.c.entry_id, t.schedule_entries.c.scheduled_start, t.schedule_entries.c.scheduled_end, t.schedule_entries.c.status)
                .where(t.schedule_entries.c.tenant.in_(tenants), t.schedule_entries.c.entry_id.in_(list(ledger.expected)))
            )
        }  # fmt: skip
        outbox = conn.execute(
            select(t.event_outbox.c.event_id, t.event_outbox.c.appointment_id)
            .where(t.event_outbox.c.tenant.in_(tenants), t.event_outbox.c.kind == "event")
            .order_by(t.event_outbox.c.id)
        ).all()

    recorded = [r.command_id for r in inbox]
    assert len(recorded) == len(set(recorded))
    assert set(recorded) == ledger.command_ids - skipped, "every command sent has exactly one result"
    assert {r.status for r in inbox} == {"OK"}, "no command of the stream should fail"
    assert not skipped & set(rows), "a dead-lettered command created nothing"

    wrong = {}
    for entry_id, (start, end, cancelled) in ledger.expected.items():
        row = rows.get(entry_id)
        got = None if row is None else (row.scheduled_start, row.scheduled_end, row.status.lower() in ("cancelled", "canceled"))
        if got != (start, end, cancelled):
            wrong[entry_id] = (got, (start, end, cancelled))
    assert not wrong, f"{len(wrong)} rows differ from what the commands imply, e.g. {next(iter(wrong.items()))}"

    expected_ids = [e.event_id for e in outbox]
    assert len(expected_ids) == ledger.events - skipped_events, "every applied command raised its events"
    seen = [e for e in events if e["headers"].get("tenant_id") in tenants]
    seen_ids = {e["headers"]["event_id"] for e in seen}
    assert seen_ids == set(expected_ids), (
        f"{len(set(expected_ids) - seen_ids)} events never published, {len(seen_ids - set(expected_ids))} unexpected"
    )
    committed: dict[str, list[str]] = defaultdict(list)
    for e in outbox:
        committed[e.appointment_id].append(e.event_id)
    published: dict[str, list[str]] = defaultdict(list)
    for e in seen:
        order = published[e["record"]["payload"]["appointmentId"]]
        if e["headers"]["event_id"] not in order:
            order.append(e["headers"]["event_id"])
    assert published == committed, "per appointment, events reach the topic in commit order"

    unanswered = [c for c in ledger.command_ids if not replies.get(c)]
    assert not unanswered, f"{len(unanswered)} commands got no reply"
