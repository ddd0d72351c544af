"""A demo tenant as the PSA seeds one: roles, permissions, people, tickets and a few entries."""
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from schemas import tables as t

_NS = uuid.UUID("0b7d3c3e-7f0e-4d2b-8d55-3f4f3b0c1a90")


def demo_id(tenant: str, name: str) -> str:
    return str(uuid.uuid5(_NS, f"{tenant}:{name}"))


# Default MSP role grants of the PSA, for the four schedule permissions.
ROLE_GRANTS = {
    "Admin": ("create", "read", "update", "delete"),
    "Dispatcher": ("create", "read", "update", "delete"),
    "Technician": ("read",),
    "Finance": ("read",),
}
PEOPLE = {
    "admin": ("Ada", "Admin", "Admin"),
    "dispatcher": ("Dana", "Dispatch", "Dispatcher"),
    "tech1": ("Tom", "Tech", "Technician"),
    "tech2": ("Tia", "Tech", "Technician"),
    "finance": ("Fin", "Ance", "Finance"),
}


@dataclass(frozen=True)
class DemoTenant:
    tenant: str
    base: datetime  # a Monday 00:00 UTC the entries are laid out from

    def id(self, name: str) -> str:
        return demo_id(self.tenant, name)

    def at(self, day: int, hour: int, minute: int = 0) -> datetime:
        return self.base + timedelta(days=day, hours=hour, minutes=minute)


def seed(conn: Connection, tenant: str, base: datetime, name: str = "Demo MSP") -> DemoTenant:
    """Insert the demo tenant (run as the owner role, which RLS does not bind)."""
    d = DemoTenant(tenant, base)
    conn.execute(t.tenants.insert().values(tenant=tenant, client_name=name))
    conn.execute(
        t.permissions.insert(),
        [
            {"tenant": tenant, "permission_id": d.id(f"perm:{a}"), "resource": "user_schedule", "action": a}
            for a in ("create", "read", "update", "delete")
        ],
    )
    conn.execute(t.roles.insert(), [{"tenant": tenant, "role_id": d.id(f"role:{r}"), "role_name": r} for r in ROLE_GRANTS])
    conn.execute(
        t.role_permissions.insert(),
        [
            {"tenant": tenant, "role_id": d.id(f"role:{r}"), "permission_id": d.id(f"perm:{a}")}
            for r, actions in ROLE_GRANTS.items()
            for a in actions
        ],
    )
    conn.execute(
        t.users.insert(),
        [
            {"tenant": tenant, "user_id": d.id(key), "username": key, "first_name": first, "last_name": last, "email": f"{key}@{tenant[:8]}.example"}
            for key, (first, last, _role) in PEOPLE.items()
        ],
    )
    conn.execute(
        t.user_roles.insert(),
        [{"tenant": tenant, "user_id": d.id(key), "role_id": d.id(f"role:{role}")} for key, (_f, _l, role) in PEOPLE.items()],
    )
    conn.execute(
        t.tickets.insert(),
        [
            {"tenant": tenant, "ticket_id": d.id("ticket1"), "ticket_number": "T-1001", "title": "Printer offline"},
            {"tenant": tenant, "ticket_id": d.id("ticket2"), "ticket_number": "T-1002", "title": "New laptop setup"},
        ],
    )
    conn.execute(
        t.workflow_definitions.insert().values(tenant=tenant, workflow_id=d.id("workflow"), name="Dispatch", created_by=d.id("admin"))
    )
    conn.execute(
        t.workflow_definition_versions.insert().values(
            tenant=tenant, version_id=d.id("workflow:v1"), workflow_id=d.id("workflow"), version=1, published_by=d.id("dispatcher"), published_at=base
        )
    )
    conn.execute(t.workflow_runs.insert().values(tenant=tenant, run_id=d.id("run"), workflow_id=d.id("workflow"), workflow_version=1))
    entries = [
        # key, title, day, start hour, hours, work item, assignees, private, weekly
        ("visit", "On-site visit: printer", 1, 10, 1, ("ticket", "ticket1"), ("tech1",), False, False),
        ("setup", "Laptop setup", 2, 13, 2, ("ticket", "ticket2"), ("tech2",), False, False),
        ("standup", "Weekly service review", 1, 9, 1, ("ad_hoc", None), ("tech1", "tech2"), False, True),
        ("dentist", "Dentist", 3, 15, 1, ("ad_hoc", None), ("tech1",), True, False),
    ]
    for key, title, day, hour, hours, (wtype, witem), assignees, private, weekly in entries:
        start = d.at(day, hour)
        conn.execute(
            t.schedule_entries.insert().values(
                tenant=tenant, entry_id=d.id(key), title=title, status="scheduled",
                scheduled_start=start, scheduled_end=start + timedelta(hours=hours),
                work_item_type=wtype, work_item_id=d.id(witem) if witem else None,
                is_private=private, is_recurring=weekly,
                recurrence_pattern={"frequency": "weekly", "interval": 1, "daysOfWeek": [start.weekday()], "startDate": start.isoformat()} if weekly else None,
            )
        )  # fmt: skip
        conn.execute(t.schedule_entry_assignees.insert(), [{"tenant": tenant, "entry_id": d.id(key), "user_id": d.id(a)} for a in assignees])
    return d
