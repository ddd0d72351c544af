"""Bulk-load the benchmark's tenants, technicians and entries with COPY, as the owner role."""
import json
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from bench.layout import PERMISSION, ROLE, Layout, uid

ROLES = {"Technician": ("read",), "Dispatcher": ("create", "read", "update", "delete")}
PERMISSIONS = ("create", "read", "update", "delete")


def initial_minute(u: int, lane: int) -> int:
    return (u * 7 + lane * 13) % 540


def _copy(conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with conn.cursor().copy(f"copy {table} ({', '.join(columns)}) from stdin") as copy:
        for row in rows:
            copy.write_row(row)


def _role_id(t: int, role: str) -> str:
    return uid(ROLE, t * 10 + list(ROLES).index(role))


def _permission_id(t: int, action: str) -> str:
    return uid(PERMISSION, t * 10 + PERMISSIONS.index(action))


def seed(owner_url: str, layout: Layout) -> None:
    """Tenants with a dispatcher and technicians, one entry per technician and lane."""
    T, U = range(layout.tenants), range(layout.technicians)
    with psycopg.connect(owner_url) as conn:
        _copy(conn, "tenants", ("tenant", "client_name"), ((layout.tenant_id(t), f"Bench MSP {t}") for t in T))
        _copy(
            conn, "permissions", ("tenant", "permission_id", "resource", "action"),
            ((layout.tenant_id(t), _permission_id(t, a), "user_schedule", a) for t in T for a in PERMISSIONS),
        )  # fmt: skip
        _copy(conn, "roles", ("tenant", "role_id", "role_name"), ((layout.tenant_id(t), _role_id(t, r), r) for t in T for r in ROLES))
        _copy(
            conn, "role_permissions", ("tenant", "role_id", "permission_id"),
            ((layout.tenant_id(t), _role_id(t, r), _permission_id(t, a)) for t in T for r, actions in ROLES.items() for a in actions),
        )  # fmt: skip
        people = [(t, layout.technician_id(t, u), f"tech{u}", "Technician") for t in T for u in U]
        people += [(t, layout.dispatcher_id(t), "dispatcher", "Dispatcher") for t in T]
        _copy(
            conn, "users", ("tenant", "user_id", "username", "email"),
            ((layout.tenant_id(t), user, name, f"{name}@t{t}.example") for t, user, name, _ in people),
        )  # fmt: skip
        _copy(conn, "user_roles", ("tenant", "user_id", "role_id"), ((layout.tenant_id(t), user, _role_id(t, role)) for t, user, _, role in people))
        _copy(conn, "schedule_entries", ENTRY_COLUMNS, _entries(layout))
        _copy(
            conn, "schedule_entry_assignees", ("tenant", "entry_id", "user_id"),
            ((layout.tenant_id(t), layout.entry_id(t, u, lane), layout.technician_id(t, u)) for t in T for lane in range(layout.lanes) for u in U),
        )  # fmt: skip
        conn.commit()
        conn.autocommit = True
        conn.execute("vacuum analyze")


ENTRY_COLUMNS = (
    "tenant", "entry_id", "title", "work_item_id", "work_item_type", "status",
    "scheduled_start", "scheduled_end", "is_recurring", "recurrence_pattern",
)  # fmt: skip


def _entries(layout: Layout) -> Iterable[tuple[Any, ...]]:
    for t in range(layout.tenants):
        tenant = layout.tenant_id(t)
        for lane in range(layout.lanes):
            for u in range(layout.technicians):
                entry = layout.entry_id(t, u, lane)
                if layout.is_recurring_lane(lane):
                    start, end, weekday = layout.series_window(lane)
                    pattern = {"frequency": "weekly", "interval": 1, "daysOfWeek": [weekday], "startDate": start.isoformat()}
                    yield tenant, entry, "Weekly review", None, "ad_hoc", "scheduled", start, end, True, json.dumps(pattern)
                else:
                    start, end = layout.window(lane, initial_minute(u, lane))
                    # The work item id need not exist: the schema keeps no foreign key to it.
                    yield tenant, entry, f"Ticket visit {lane}", entry, "ticket", "scheduled", start, end, False, None
