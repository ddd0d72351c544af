"""Commands for the benchmark: reschedule-only, and the mixed workload.

The generator remembers where it moved each entry, so every reschedule really
changes the window (and so writes, audits and raises an event).
"""
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.layout import BASE, OFFICE_SLOTS, Layout
from bench.seed import initial_minute
from handlers.timeutil import iso

# The mixed workload's share of each action (find and search split the last 5%).
MIX = (
    ("scheduling.reschedule", 60),
    ("scheduling.reassign", 15),
    ("scheduling.cancel", 10),
    ("scheduling.complete", 10),
    ("scheduling.find_entry", 3),
    ("scheduling.search_entries", 2),
)
RESCHEDULE_ONLY = (("scheduling.reschedule", 100),)


@dataclass(frozen=True)
class Target:
    """A plain entry: tenant, technician and lane numbers."""

    t: int
    u: int
    lane: int


@dataclass
class Workload:
    layout: Layout
    seed: int = 7
    minutes: dict[Target, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def target(self, t: int | None = None) -> Target:
        lay = self.layout
        return Target(
            self.rng.randrange(lay.tenants) if t is None else t,
            self.rng.randrange(lay.technicians),
            lay.plain_lane(self.rng.randrange(lay.plain_lanes)),
        )

    def commands(self, count: int, mix: tuple[tuple[str, int], ...]) -> list[dict[str, Any]]:
        actions = [a for a, _ in mix]
        weights = [w for _, w in mix]
        return [self.command(self.rng.choices(actions, weights)[0]) for _ in range(count)]

    def command(self, action: str, target: Target | None = None) -> dict[str, Any]:
        tg = target or self.target()
        lay = self.layout
        entry = lay.entry_id(tg.t, tg.u, tg.lane)
        if action == "scheduling.reschedule":
            data: dict[str, Any] = {"entry_id": entry, "window": self.new_window(tg)}
        elif action == "scheduling.reassign":
            other = (tg.u + 1 + self.rng.randrange(lay.technicians - 1)) % lay.technicians
            data = {"entry_id": entry, "assigned_user_ids": [lay.technician_id(tg.t, other)]}
        elif action == "scheduling.cancel":
            data = {"entry_id": entry, "reason": "Customer postponed"}
        elif action == "scheduling.complete":
            data = {"entry_id": entry, "outcome": "Done"}
        elif action == "scheduling.find_entry":
            data = {"entry_id": entry}
        else:
            day = BASE + timedelta(days=tg.lane)
            data = {"assigned_user_ids": [lay.technician_id(tg.t, tg.u)], "window": {"start": iso(day), "end": iso(day + timedelta(days=1))}}
        return {
            "command_id": str(uuid.uuid4()),
            "tenant_id": lay.tenant_id(tg.t),
            "action": action,
            "actor": {"user_id": lay.dispatcher_id(tg.t)},
            "input": data,
        }

    def new_window(self, tg: Target) -> dict[str, str]:
        """A window in the entry's own lane that differs from where it is now."""
        current = self.minutes.get(tg, initial_minute(tg.u, tg.lane))
        minute = (current + 1 + self.rng.randrange(OFFICE_SLOTS - 1)) % OFFICE_SLOTS
        self.minutes[tg] = minute
        start, end = self.layout.window(tg.lane, minute)
        return {"start": iso(start), "end": iso(end)}
