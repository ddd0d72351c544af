"""Every scheduling action, end to end: command topic → rows, audit, reply and events.

Commands go in only as Kafka messages; rows are inspected with the owner role.
The seeded demo tenant (consumer/demo.py, BASE is a Monday):
  visit   ticket1, tech1, day 1 10:00-11:00
  setup   ticket2, tech2, day 2 13:00-15:00
  standup ad hoc, weekly on Tuesdays, tech1 + tech2, day 1 09:00-10:00
  dentist private ad hoc, tech1, day 3 15:00-16:00
"""
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from handlers.timeutil import iso, to_millis
from schemas.tables import (
    audit_logs,
    schedule_conflicts,
    schedule_entries,
    schedule_entry_assignees,
    user_roles,
    users,
)
from tests.conftest import new_tenant

pytestmark = pytest.mark.integration

# Replies to actions still being implemented must fail the test fast, not hang it.
REPLY_TIMEOUT = 15


# --- commands and replies -------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def warm(stack, owner):
    """Wait once for the module's service to join its group, so per-test timeouts measure the action only."""
    warm_tenant = new_tenant(owner)
    stack.reply(stack.send(command(warm_tenant, "scheduling.find_entry", {"entry_id": warm_tenant.id("visit")})), timeout=90)


def command(tenant, action: str, input_: dict[str, Any], actor: str = "dispatcher", **envelope: Any) -> dict[str, Any]:
    return {"tenant_id": tenant.tenant, "action": action, "actor": {"user_id": tenant.id(actor)}, "input": input_, **envelope}


def send(stack, tenant, action: str, input_: dict[str, Any], actor: str = "dispatcher", **envelope: Any) -> tuple[str, dict[str, Any]]:
    """Send one command and wait for its reply: (command_id, reply)."""
    command_id = stack.send(command(tenant, action, input_, actor, **envelope))
    return command_id, stack.reply(command_id, timeout=REPLY_TIMEOUT)


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["status"] == "OK", f"expected OK, got {reply['error']}"
    assert reply["error"] is None
    return reply["output"]


def error(reply: dict[str, Any], code: str) -> dict[str, Any]:
    assert reply["status"] == "ERROR" and reply["error"]["code"] == code, f"expected {code}, got {reply['status']}: {reply['error']}"
    assert reply["output"] is None
    return reply["error"]


def window(tenant, day: int, hour: int, minute: int = 0, minutes: int = 60) -> dict[str, str]:
    start = tenant.at(day, hour, minute)
    return {"start": iso(start), "end": iso(start + timedelta(minutes=minutes))}


def occurrence(master_id: str, start: datetime) -> str:
    return f"{master_id}_{to_millis(start)}"


def events(stack, command_id: str, count: int) -> list[dict[str, Any]]:
    """Exactly `count` events of a command (checked after the outbox drained), in topic order."""
    if count:
        stack.wait_events(command_id, count, timeout=REPLY_TIMEOUT)
    stack.quiesce()
    seen = sorted(stack.events_of(command_id), key=lambda e: (e["partition"], e["offset"]))
    assert len(seen) == count, [e["record"]["eventType"] for e in seen]
    return seen


def find(stack, tenant, entry_id: str, actor: str = "dispatcher") -> dict[str, Any]:
    return ok(send(stack, tenant, "scheduling.find_entry", {"entry_id": entry_id}, actor)[1])


def search(stack, tenant, actor: str = "dispatcher", **input_: Any) -> dict[str, Any]:
    return send(stack, tenant, "scheduling.search_entries", input_, actor)[1]


def ids(output: dict[str, Any]) -> list[str]:
    assert output["count"] == len(output["entries"])
    return [e["entry_id"] for e in output["entries"]]


# --- rows, seen by the owner role ------------------------------------------------


def entry_row(owner, tenant, entry_id: str):
    with owner.connect() as conn:
        return conn.execute(
            select(schedule_entries).where(schedule_entries.c.tenant == tenant.tenant, schedule_entries.c.entry_id == entry_id)
        ).one_or_none()


def assignees(owner, tenant, entry_id: str) -> set[str]:
    with owner.connect() as conn:
        rows = conn.execute(
            select(schedule_entry_assignees.c.user_id).where(
                schedule_entry_assignees.c.tenant == tenant.tenant, schedule_entry_assignees.c.entry_id == entry_id
            )
        )
        return {str(r[0]) for r in rows}


def entry_count(owner, tenant) -> int:
    with owner.connect() as conn:
        return len(conn.execute(select(schedule_entries.c.entry_id).where(schedule_entries.c.tenant == tenant.tenant)).all())


def audit_rows(owner, tenant) -> list:
    with owner.connect() as conn:
        return conn.execute(select(audit_logs).where(audit_logs.c.tenant == tenant.tenant)).all()


def conflict_rows(owner, tenant) -> list:
    with owner.connect() as conn:
        return conn.execute(select(schedule_conflicts).where(schedule_conflicts.c.tenant == tenant.tenant)).all()


def insert_entry(owner, tenant, key: str, title: str, assigned: list[str], *, day: int | None = None, hour: int = 0,
                 hours: int = 1, work_item: tuple[str, str | None] = ("ad_hoc", None), status: str = "scheduled",
                 private: bool = False, notes: str | None = None) -> str:  # fmt: skip
    """A stored, non-recurring entry; day None makes it time-less (ad hoc only)."""
    start = None if day is None else tenant.at(day, hour)
    end = None if start is None else start + timedelta(hours=hours)
    with owner.begin() as conn:
        conn.execute(
            schedule_entries.insert().values(
                tenant=tenant.tenant, entry_id=tenant.id(key), title=title, status=status, notes=notes,
                scheduled_start=start, scheduled_end=end, work_item_type=work_item[0],
                work_item_id=tenant.id(work_item[1]) if work_item[1] else None, is_private=private,
            )
        )  # fmt: skip
        conn.execute(schedule_entry_assignees.insert(), [{"tenant": tenant.tenant, "entry_id": tenant.id(key), "user_id": tenant.id(a)} for a in assigned])
    return tenant.id(key)


def set_status(owner, tenant, key: str, status: str) -> None:
    with owner.begin() as conn:
        conn.execute(
            schedule_entries.update()
            .where(schedule_entries.c.tenant == tenant.tenant, schedule_entries.c.entry_id == tenant.id(key))
            .values(status=status)
        )


def add_technician(owner, tenant, key: str) -> str:
    """Another active internal user with the tenant's Technician role."""
    with owner.begin() as conn:
        conn.execute(users.insert().values(tenant=tenant.tenant, user_id=tenant.id(key), username=key, email=f"{key}@{tenant.tenant[:8]}.example"))
        conn.execute(user_roles.insert().values(tenant=tenant.tenant, user_id=tenant.id(key), role_id=tenant.id("role:Technician")))
    return tenant.id(key)


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except (TypeError, ValueError):
        return False


# --- scheduling.create_entry --------------------------------------------------------


def create_input(tenant, assigned=("tech1",), title="Install switch", day=4, hour=10, minute=0, minutes=60, **extra) -> dict[str, Any]:
    return {"assigned_user_ids": [tenant.id(a) for a in assigned], "title": title, "window": window(tenant, day, hour, minute, minutes), **extra}


def test_create_entry_linked_to_a_ticket_writes_the_row_and_announces_it(stack, tenant, owner):
    link = {"type": "ticket", "id": tenant.id("ticket1")}
    command_id, reply = send(stack, tenant, "scheduling.create_entry",
                             create_input(tenant, ("tech1", "tech2"), minutes=120, link=link, notes="Bring a ladder"),
                             correlation_id="corr-create")  # fmt: skip
    out = ok(reply)
    entry_id = out["entry_id"]
    assert is_uuid(entry_id)
    assert sorted(out["assigned_user_ids"]) == sorted([tenant.id("tech1"), tenant.id("tech2")])
    assert out["start"] == iso(tenant.at(4, 10)) and out["end"] == iso(tenant.at(4, 12))
    assert out["work_item_id"] == tenant.id("ticket1") and out["work_item_type"] == "ticket"

    row = entry_row(owner, tenant, entry_id)
    assert row.title == "Install switch" and row.notes == "Bring a ladder" and row.status == "scheduled"
    assert row.scheduled_start == tenant.at(4, 10) and row.scheduled_end == tenant.at(4, 12)
    assert row.work_item_type == "ticket" and row.work_item_id == tenant.id("ticket1")
    assert row.is_private is False and not row.is_recurring and row.original_entry_id is None
    assert assignees(owner, tenant, entry_id) == {tenant.id("tech1"), tenant.id("tech2")}

    (audit,) = audit_rows(owner, tenant)
    assert audit.operation == "workflow_action:scheduling.create_entry"
    assert audit.table_name == "schedule_entries" and audit.record_id == entry_id
    assert audit.details["command_id"] == command_id and audit.user_id == tenant.id("dispatcher")

    created, *assigned = events(stack, command_id, 3)
    assert created["record"]["eventType"] == "APPOINTMENT_CREATED"
    assert created["schema"] == "psa.scheduling.events.AppointmentCreated"
    payload = created["record"]["payload"]
    assert payload["appointmentId"] == entry_id and payload["ticketId"] == tenant.id("ticket1")
    assert payload["startAt"] == iso(tenant.at(4, 10)) and payload["endAt"] == iso(tenant.at(4, 12))
    assert payload["tenantId"] == tenant.tenant and payload["actorUserId"] == tenant.id("dispatcher")
    assert [e["record"]["eventType"] for e in assigned] == ["APPOINTMENT_ASSIGNED"] * 2
    assert {e["record"]["payload"]["newAssigneeId"] for e in assigned} == {tenant.id("tech1"), tenant.id("tech2")}
    for event in [created, *assigned]:
        record = event["record"]
        assert record["causationId"] == command_id and record["correlationId"] == "corr-create"
        assert record["payload"]["appointmentId"] == entry_id
        assert event["key"] == f"{tenant.tenant}:{entry_id}"
        assert event["headers"]["event_type"] == record["eventType"] and event["headers"]["event_id"] == record["id"]
    for event in assigned:
        assert event["record"]["payload"]["newAssigneeType"] == "user"
        assert event["record"]["payload"]["ticketId"] == tenant.id("ticket1")
    assert len({e["record"]["id"] for e in [created, *assigned]}) == 3


def test_create_entry_ad_hoc_and_private_publishes_no_event(stack, tenant, owner):
    command_id, reply = send(stack, tenant, "scheduling.create_entry", create_input(tenant, ("tech2",), title="Training", is_private=True))
    out = ok(reply)
    assert out["work_item_id"] is None and out["work_item_type"] == "ad_hoc"
    assert out["assigned_user_ids"] == [tenant.id("tech2")]
    row = entry_row(owner, tenant, out["entry_id"])
    assert row.work_item_type == "ad_hoc" and row.work_item_id is None and row.is_private is True
    assert len(audit_rows(owner, tenant)) == 1
    events(stack, command_id, 0)


def test_create_entry_with_unknown_users_is_not_found_and_names_them(stack, tenant, owner):
    ghost = str(uuid.uuid4())
    before = entry_count(owner, tenant)
    inp = create_input(tenant)
    inp["assigned_user_ids"].append(ghost)
    err = error(send(stack, tenant, "scheduling.create_entry", inp)[1], "NOT_FOUND")
    assert err["details"]["missing_user_ids"] == [ghost]
    assert entry_count(owner, tenant) == before and audit_rows(owner, tenant) == []


def test_create_entry_for_a_non_technician_is_permission_denied_and_names_them(stack, tenant, owner):
    before = entry_count(owner, tenant)
    err = error(send(stack, tenant, "scheduling.create_entry", create_input(tenant, ("tech1", "finance")))[1], "PERMISSION_DENIED")
    assert err["details"]["ineligible_user_ids"] == [tenant.id("finance")]
    assert entry_count(owner, tenant) == before and audit_rows(owner, tenant) == []


def test_create_entry_with_duplicate_assignees_is_a_validation_error(stack, tenant, owner):
    before = entry_count(owner, tenant)
    error(send(stack, tenant, "scheduling.create_entry", create_input(tenant, ("tech1", "tech1")))[1], "VALIDATION_ERROR")
    assert entry_count(owner, tenant) == before


def test_create_entry_by_a_technician_who_may_only_read_is_permission_denied(stack, tenant, owner):
    before = entry_count(owner, tenant)
    err = error(send(stack, tenant, "scheduling.create_entry", create_input(tenant), actor="tech1")[1], "PERMISSION_DENIED")
    assert err["details"] == {"resource": "user_schedule", "action": "create"}
    assert entry_count(owner, tenant) == before


def test_create_entry_linked_to_a_missing_ticket_is_not_found(stack, tenant, owner):
    before = entry_count(owner, tenant)
    inp = create_input(tenant, link={"type": "ticket", "id": str(uuid.uuid4())})
    error(send(stack, tenant, "scheduling.create_entry", inp)[1], "NOT_FOUND")
    assert entry_count(owner, tenant) == before


def test_create_entry_conflict_fails_and_names_the_conflicting_users(stack, tenant, owner):
    # tech1 holds "visit" on day 1, 10:00-11:00; tech2 is free then.
    before = entry_count(owner, tenant)
    inp = create_input(tenant, ("tech1", "tech2"), day=1, hour=10, minute=30)
    err = error(send(stack, tenant, "scheduling.create_entry", inp)[1], "CONFLICT")
    assert err["details"]["conflicting_user_ids"] == [tenant.id("tech1")]
    assert err["details"]["conflict_count"] == 1
    assert err["details"]["conflicts"] == [
        {"entry_id": tenant.id("visit"), "user_id": tenant.id("tech1"), "start": iso(tenant.at(1, 10)), "end": iso(tenant.at(1, 11))}
    ]
    assert entry_count(owner, tenant) == before


def test_create_entry_back_to_back_with_another_entry_is_no_conflict(stack, tenant):
    inp = create_input(tenant, ("tech1",), day=1, hour=11)
    out = ok(send(stack, tenant, "scheduling.create_entry", inp)[1])
    assert out["start"] == iso(tenant.at(1, 11)) and out["end"] == iso(tenant.at(1, 12))


def test_create_entry_in_shift_mode_moves_past_the_conflict(stack, tenant, owner):
    inp = create_input(tenant, ("tech1",), day=1, hour=10, minute=30, conflict_mode="shift")
    out = ok(send(stack, tenant, "scheduling.create_entry", inp)[1])
    assert out["start"] == iso(tenant.at(1, 11)) and out["end"] == iso(tenant.at(1, 12))
    row = entry_row(owner, tenant, out["entry_id"])
    assert row.scheduled_start == tenant.at(1, 11) and row.scheduled_end == tenant.at(1, 12)
    assert conflict_rows(owner, tenant) == []


def test_create_entry_in_override_mode_applies_and_records_the_conflict(stack, tenant, owner):
    inp = create_input(tenant, ("tech1",), day=1, hour=10, minute=30, conflict_mode="override")
    out = ok(send(stack, tenant, "scheduling.create_entry", inp)[1])
    assert out["start"] == iso(tenant.at(1, 10, 30)) and out["end"] == iso(tenant.at(1, 11, 30))
    assert entry_row(owner, tenant, out["entry_id"]).scheduled_start == tenant.at(1, 10, 30)
    (conflict,) = conflict_rows(owner, tenant)
    assert conflict.entry_id_1 == out["entry_id"] and conflict.entry_id_2 == tenant.id("visit")
    assert conflict.conflict_type == "overlap" and conflict.resolved is False


# --- scheduling.assign_user --------------------------------------------------------------


def assign_input(tenant, user="tech2", day=4, hour=8, link=("ticket", "ticket2"), **extra) -> dict[str, Any]:
    return {"user_id": tenant.id(user), "window": window(tenant, day, hour), "link": {"type": link[0], "id": tenant.id(link[1])}, **extra}


def test_assign_user_schedules_a_technician_on_a_ticket(stack, tenant, owner):
    command_id, reply = send(stack, tenant, "scheduling.assign_user", assign_input(tenant))
    out = ok(reply)
    entry_id = out["schedule_event_id"]
    assert is_uuid(entry_id)
    assert out["assigned_user_id"] == tenant.id("tech2")
    assert out["start"] == iso(tenant.at(4, 8)) and out["end"] == iso(tenant.at(4, 9))

    row = entry_row(owner, tenant, entry_id)
    assert row.title == "Scheduled work" and row.status == "scheduled"
    assert row.work_item_type == "ticket" and row.work_item_id == tenant.id("ticket2")
    assert assignees(owner, tenant, entry_id) == {tenant.id("tech2")}
    (audit,) = audit_rows(owner, tenant)
    assert audit.operation == "workflow_action:scheduling.assign_user" and audit.record_id == entry_id

    created, assigned = events(stack, command_id, 2)
    assert created["record"]["eventType"] == "APPOINTMENT_CREATED"
    assert created["record"]["payload"]["appointmentId"] == entry_id
    assert created["record"]["payload"]["ticketId"] == tenant.id("ticket2")
    assert assigned["record"]["eventType"] == "APPOINTMENT_ASSIGNED"
    assert assigned["record"]["payload"]["newAssigneeId"] == tenant.id("tech2")


def test_assign_user_keeps_a_given_title(stack, tenant, owner):
    out = ok(send(stack, tenant, "scheduling.assign_user", assign_input(tenant, title="Swap toner", notes="Side door"))[1])
    row = entry_row(owner, tenant, out["schedule_event_id"])
    assert row.title == "Swap toner" and row.notes == "Side door"


def test_assign_user_of_a_non_technician_is_permission_denied(stack, tenant, owner):
    before = entry_count(owner, tenant)
    err = error(send(stack, tenant, "scheduling.assign_user", assign_input(tenant, user="finance"))[1], "PERMISSION_DENIED")
    assert err["details"]["ineligible_user_ids"] == [tenant.id("finance")]
    assert entry_count(owner, tenant) == before


def test_assign_user_of_an_unknown_user_is_not_found(stack, tenant, owner):
    ghost = str(uuid.uuid4())
    inp = {**assign_input(tenant), "user_id": ghost}
    err = error(send(stack, tenant, "scheduling.assign_user", inp)[1], "NOT_FOUND")
    assert err["details"]["missing_user_ids"] == [ghost]
    assert audit_rows(owner, tenant) == []


# --- scheduling.search_entries --------------------------------------------------------------


def search_window(tenant, start_day: int, end_day: int, start_hour: int = 0, end_hour: int = 0) -> dict[str, str]:
    return {"start": iso(tenant.at(start_day, start_hour)), "end": iso(tenant.at(end_day, end_hour))}


def test_search_by_window_returns_entries_that_overlap_it(stack, tenant):
    # day 1 10:30 → day 2 14:00 overlaps visit (10-11) and setup (13-15); the standup ends at 10:00.
    out = ok(search(stack, tenant, window={"start": iso(tenant.at(1, 10, 30)), "end": iso(tenant.at(2, 14))}))
    assert ids(out) == [tenant.id("visit"), tenant.id("setup")]
    visit = out["entries"][0]
    assert visit["title"] == "On-site visit: printer" and visit["status"] == "scheduled"
    assert visit["scheduled_start"] == iso(tenant.at(1, 10)) and visit["scheduled_end"] == iso(tenant.at(1, 11))
    assert visit["work_item_id"] == tenant.id("ticket1") and visit["work_item_type"] == "ticket"
    assert visit["assigned_user_ids"] == [tenant.id("tech1")]
    assert visit["is_private"] is False and visit["is_recurring"] is False


def test_search_by_window_excludes_entries_that_only_touch_it(stack, tenant):
    # visit ends at 11:00, setup starts at day 2 13:00: back to back with the window, no overlap.
    out = ok(search(stack, tenant, window=search_window(tenant, 1, 2, 11, 13)))
    assert ids(out) == []


def test_search_by_assignee(stack, tenant):
    out = ok(search(stack, tenant, assigned_user_ids=[tenant.id("tech2")]))
    assert set(ids(out)) == {tenant.id("setup"), tenant.id("standup")}


def test_search_by_work_item(stack, tenant):
    out = ok(search(stack, tenant, work_item={"type": "ticket", "id": tenant.id("ticket1")}))
    assert ids(out) == [tenant.id("visit")]


def test_search_by_status_reads_stored_statuses_case_insensitively(stack, tenant, owner):
    set_status(owner, tenant, "visit", "Cancelled")
    set_status(owner, tenant, "setup", "Scheduled")
    assert ids(ok(search(stack, tenant, status=["cancelled"]))) == [tenant.id("visit")]
    scheduled = set(ids(ok(search(stack, tenant, status=["scheduled"]))))
    assert tenant.id("setup") in scheduled and tenant.id("visit") not in scheduled
    assert ids(ok(search(stack, tenant, status=["completed"]))) == []


def test_search_text_query_matches_title_or_notes_case_insensitively(stack, tenant, owner):
    noted = insert_entry(owner, tenant, "noted", "Quarterly check", ["tech2"], day=4, hour=9, notes="Replace the PRINTER drum")
    out = ok(search(stack, tenant, query="printer"))
    assert set(ids(out)) == {tenant.id("visit"), noted}


def test_search_text_query_escapes_like_wildcards(stack, tenant, owner):
    percent = insert_entry(owner, tenant, "percent", "Budget 100% sign-off", ["tech2"], day=4, hour=9)
    insert_entry(owner, tenant, "plain", "Budget sign-off", ["tech2"], day=4, hour=11)
    underscore = insert_entry(owner, tenant, "underscore", "Review config_backup", ["tech2"], day=4, hour=13)
    assert ids(ok(search(stack, tenant, query="%"))) == [percent]
    assert ids(ok(search(stack, tenant, query="_"))) == [underscore]
    assert ids(ok(search(stack, tenant, query="Budget%sign"))) == []


def test_search_redacts_a_private_entry_in_a_window_and_hides_it_from_a_text_query(stack, tenant):
    day3 = search_window(tenant, 3, 4)
    (hidden,) = ok(search(stack, tenant, actor="tech2", window=day3))["entries"]
    assert hidden["entry_id"] == tenant.id("dentist")
    assert hidden["title"] == "Busy" and hidden["notes"] == ""
    assert hidden["work_item_id"] is None and hidden["work_item_type"] == "ad_hoc"
    assert hidden["is_private"] is True and hidden["assigned_user_ids"] == [tenant.id("tech1")]
    assert hidden["scheduled_start"] == iso(tenant.at(3, 15)) and hidden["scheduled_end"] == iso(tenant.at(3, 16))

    assert ids(ok(search(stack, tenant, actor="tech2", query="Dentist"))) == []
    (shown,) = ok(search(stack, tenant, actor="tech1", query="Dentist"))["entries"]
    assert shown["entry_id"] == tenant.id("dentist") and shown["title"] == "Dentist"
    (full,) = ok(search(stack, tenant, actor="tech1", window=day3))["entries"]
    assert full["title"] == "Dentist"
    (for_dispatcher,) = ok(search(stack, tenant, window=day3))["entries"]
    assert for_dispatcher["title"] == "Dentist"


def test_search_expands_a_recurring_series_when_the_window_has_both_ends(stack, tenant):
    # Two weeks from Monday day 0: the weekly standup happens on day 1 and day 8.
    out = ok(search(stack, tenant, window=search_window(tenant, 0, 14)))
    standup = tenant.id("standup")
    first, second = occurrence(standup, tenant.at(1, 9)), occurrence(standup, tenant.at(8, 9))
    assert set(ids(out)) == {first, second, tenant.id("visit"), tenant.id("setup"), tenant.id("dentist")}
    starts = [e["scheduled_start"] for e in out["entries"]]
    assert starts == sorted(starts)
    by_id = {e["entry_id"]: e for e in out["entries"]}
    for occ_id, day in ((first, 1), (second, 8)):
        occ = by_id[occ_id]
        assert occ["scheduled_start"] == iso(tenant.at(day, 9)) and occ["scheduled_end"] == iso(tenant.at(day, 10))
        assert occ["is_recurring"] is True and occ["original_entry_id"] == standup
        assert occ["title"] == "Weekly service review"
        assert sorted(occ["assigned_user_ids"]) == sorted([tenant.id("tech1"), tenant.id("tech2")])


def test_search_pages_with_a_keyset_cursor_without_duplicates(stack, tenant):
    criteria = {"window": search_window(tenant, 0, 14)}
    everything = ids(ok(search(stack, tenant, **criteria, limit=100)))
    assert len(everything) == 5

    first = ok(search(stack, tenant, **criteria, limit=2))
    assert len(first["entries"]) == 2 and first["count"] == 2
    assert first.get("next_cursor")
    seen, cursor, pages = ids(first), first["next_cursor"], 1
    while cursor:
        page = ok(search(stack, tenant, **criteria, limit=2, cursor=cursor))
        assert 1 <= len(page["entries"]) <= 2
        seen += ids(page)
        cursor, pages = page.get("next_cursor"), pages + 1
        assert pages <= 5, "the cursor never ran out"
    assert len(seen) == len(set(seen))
    assert seen == everything


@pytest.mark.parametrize("limit", [0, 101])
def test_search_limit_out_of_range_is_a_validation_error(stack, tenant, limit):
    error(search(stack, tenant, query="printer", limit=limit), "VALIDATION_ERROR")


@pytest.mark.parametrize("criteria", [{}, {"window": {"start": None, "end": None}}], ids=["nothing", "empty-window"])
def test_search_without_any_criterion_is_a_validation_error(stack, tenant, criteria):
    error(search(stack, tenant, **criteria), "VALIDATION_ERROR")


# --- scheduling.reschedule ---------------------------------------------------------------------


def reschedule_input(tenant, entry="visit", day=1, hour=14, minute=0, minutes=60, **extra) -> dict[str, Any]:
    return {"entry_id": tenant.id(entry), "window": window(tenant, day, hour, minute, minutes), **extra}


def test_reschedule_in_shift_mode_moves_past_an_entry_of_the_same_technician(stack, tenant, owner):
    # The dentist (tech1) to day 1 10:30-11:30, where tech1's visit runs 10:00-11:00 → 11:00-12:00.
    out = ok(send(stack, tenant, "scheduling.reschedule", reschedule_input(tenant, "dentist", 1, 10, 30, conflict_mode="shift"))[1])
    assert out["new_start"] == iso(tenant.at(1, 11)) and out["new_end"] == iso(tenant.at(1, 12))
    assert out["previous_start"] == iso(tenant.at(3, 15)) and out["conflict_mode"] == "shift"
    assert out["conflicts_detected"] == 0
    row = entry_row(owner, tenant, tenant.id("dentist"))
    assert row.scheduled_start == tenant.at(1, 11) and row.scheduled_end == tenant.at(1, 12)


def test_reschedule_in_shift_mode_moves_past_an_occurrence_of_a_weekly_series(stack, tenant, owner):
    # tech1's standup happens every Tuesday 09:00-10:00; day 8 is the second Tuesday.
    command_id, reply = send(stack, tenant, "scheduling.reschedule", reschedule_input(tenant, "visit", 8, 8, 30, conflict_mode="shift"))
    out = ok(reply)
    assert out["new_start"] == iso(tenant.at(8, 10)) and out["new_end"] == iso(tenant.at(8, 11))
    assert entry_row(owner, tenant, tenant.id("visit")).scheduled_start == tenant.at(8, 10)
    (event,) = events(stack, command_id, 1)
    assert event["record"]["payload"]["newStartAt"] == iso(tenant.at(8, 10))


def test_reschedule_in_fail_mode_is_blocked_by_an_occurrence_of_a_weekly_series(stack, tenant, owner):
    err = error(send(stack, tenant, "scheduling.reschedule", reschedule_input(tenant, "visit", 8, 9, 30))[1], "CONFLICT")
    users_in_conflict = {c["user_id"] for c in err["details"]["conflicts"]}
    assert users_in_conflict == {tenant.id("tech1")}
    assert entry_row(owner, tenant, tenant.id("visit")).scheduled_start == tenant.at(1, 10)


def test_reschedule_in_override_mode_applies_and_records_the_conflict(stack, tenant, owner):
    # The visit (tech1) onto tech1's dentist appointment, day 3 15:00-16:00.
    command_id, reply = send(stack, tenant, "scheduling.reschedule", reschedule_input(tenant, "visit", 3, 15, 30, conflict_mode="override"))
    out = ok(reply)
    assert out["new_start"] == iso(tenant.at(3, 15, 30)) and out["conflicts_detected"] == 1
    assert out["event_type"] == "APPOINTMENT_RESCHEDULED"
    assert entry_row(owner, tenant, tenant.id("visit")).scheduled_start == tenant.at(3, 15, 30)
    (conflict,) = conflict_rows(owner, tenant)
    assert conflict.entry_id_1 == tenant.id("visit") and conflict.entry_id_2 == tenant.id("dentist")
    assert conflict.conflict_type == "overlap" and conflict.resolved is False
    events(stack, command_id, 1)


def test_reschedule_to_the_same_window_is_ok_without_an_event(stack, tenant, owner):
    command_id, reply = send(stack, tenant, "scheduling.reschedule", reschedule_input(tenant, "visit", 1, 10))
    out = ok(reply)
    assert out["event_type"] is None
    assert out["new_start"] == out["previous_start"] == iso(tenant.at(1, 10))
    assert entry_row(owner, tenant, tenant.id("visit")).scheduled_start == tenant.at(1, 10)
    events(stack, command_id, 0)


def test_reschedule_with_future_scope_on_a_non_recurring_entry_is_a_validation_error(stack, tenant, owner):
    error(send(stack, tenant, "scheduling.reschedule", reschedule_input(tenant, recurrence_scope="future"))[1], "VALIDATION_ERROR")
    assert entry_row(owner, tenant, tenant.id("visit")).scheduled_start == tenant.at(1, 10)
    assert audit_rows(owner, tenant) == []


# --- scheduling.reassign -----------------------------------------------------------------------------


def reassign_input(tenant, to: list[str], entry="visit", **extra) -> dict[str, Any]:
    return {"entry_id": tenant.id(entry), "assigned_user_ids": [tenant.id(u) for u in to], **extra}


def test_reassign_replaces_the_assignees_and_announces_each_new_one(stack, tenant, owner):
    add_technician(owner, tenant, "tech3")
    command_id, reply = send(stack, tenant, "scheduling.reassign", reassign_input(tenant, ["tech2", "tech3"], reason="tech1 is ill", comment="Urgent"))
    out = ok(reply)
    assert out["entry_id"] == tenant.id("visit") and out["updated_entry_id"] == tenant.id("visit")
    assert out["previous_assigned_user_ids"] == [tenant.id("tech1")]
    assert sorted(out["assigned_user_ids"]) == sorted([tenant.id("tech2"), tenant.id("tech3")])
    assert out["changed"] is True and out["events_emitted"] == 2 and out["recurrence_scope"] == "single"

    assert assignees(owner, tenant, tenant.id("visit")) == {tenant.id("tech2"), tenant.id("tech3")}
    assert entry_row(owner, tenant, tenant.id("visit")).notes == "Reassign reason: tech1 is ill\n\nUrgent"
    (audit,) = audit_rows(owner, tenant)
    assert audit.operation == "workflow_action:scheduling.reassign" and audit.record_id == tenant.id("visit")

    emitted = events(stack, command_id, 2)
    assert {e["record"]["eventType"] for e in emitted} == {"APPOINTMENT_ASSIGNED"}
    assert {e["record"]["payload"]["newAssigneeId"] for e in emitted} == {tenant.id("tech2"), tenant.id("tech3")}
    for event in emitted:
        payload = event["record"]["payload"]
        assert payload["appointmentId"] == tenant.id("visit") and payload["ticketId"] == tenant.id("ticket1")
        assert payload["newAssigneeType"] == "user" and payload["previousAssigneeId"] == tenant.id("tech1")


def test_reassign_announces_only_the_newly_assigned_user(stack, tenant, owner):
    command_id, reply = send(stack, tenant, "scheduling.reassign", reassign_input(tenant, ["tech1", "tech2"]))
    out = ok(reply)
    assert out["changed"] is True and out["events_emitted"] == 1
    assert assignees(owner, tenant, tenant.id("visit")) == {tenant.id("tech1"), tenant.id("tech2")}
    (event,) = events(stack, command_id, 1)
    assert event["record"]["payload"]["newAssigneeId"] == tenant.id("tech2")


def test_reassign_in_add_mode_keeps_the_current_assignees(stack, tenant, owner):
    command_id, reply = send(stack, tenant, "scheduling.reassign", reassign_input(tenant, ["tech2"], mode="add"))
    out = ok(reply)
    assert sorted(out["assigned_user_ids"]) == sorted([tenant.id("tech1"), tenant.id("tech2")])
    assert out["previous_assigned_user_ids"] == [tenant.id("tech1")] and out["events_emitted"] == 1
    assert assignees(owner, tenant, tenant.id("visit")) == {tenant.id("tech1"), tenant.id("tech2")}
    (event,) = events(stack, command_id, 1)
    assert event["record"]["payload"]["newAssigneeId"] == tenant.id("tech2")


def test_reassign_that_changes_nothing_writes_and_announces_nothing(stack, tenant, owner):
    command_id, reply = send(stack, tenant, "scheduling.reassign", reassign_input(tenant, ["tech1"], reason="checking"))
    out = ok(reply)
    assert out["changed"] is False and out["events_emitted"] == 0
    assert out["updated_entry_id"] == tenant.id("visit")
    assert out["assigned_user_ids"] == out["previous_assigned_user_ids"] == [tenant.id("tech1")]
    assert entry_row(owner, tenant, tenant.id("visit")).notes is None
    assert audit_rows(owner, tenant) == []
    events(stack, command_id, 0)


def test_reassign_to_a_non_technician_is_permission_denied(stack, tenant, owner):
    err = error(send(stack, tenant, "scheduling.reassign", reassign_input(tenant, ["finance"]))[1], "PERMISSION_DENIED")
    assert err["details"]["ineligible_user_ids"] == [tenant.id("finance")]
    assert assignees(owner, tenant, tenant.id("visit")) == {tenant.id("tech1")}
    assert audit_rows(owner, tenant) == []


def test_reassign_with_duplicate_users_is_a_validation_error(stack, tenant, owner):
    error(send(stack, tenant, "scheduling.reassign", reassign_input(tenant, ["tech2", "tech2"]))[1], "VALIDATION_ERROR")
    assert assignees(owner, tenant, tenant.id("visit")) == {tenant.id("tech1")}


# --- scheduling.cancel / complete / no_show -------------------------------------------------------------

ISSUED = {"day": 1, "hour": 11, "minute": 5}

LIFECYCLE = [
    pytest.param(
        "scheduling.cancel", {"reason": "Customer away", "note": "Call back Monday"}, "cancelled", "APPOINTMENT_CANCELED",
        "Cancellation reason: Customer away\n\nCall back Monday", {"reason": "Customer away"}, {"reason": "Customer away"},
        id="cancel",
    ),
    pytest.param(
        "scheduling.complete", {"outcome": "Printer fixed", "note": "Drum replaced"}, "completed", "APPOINTMENT_COMPLETED",
        "Completion outcome: Printer fixed\n\nDrum replaced", {"outcome": "Printer fixed", "completed_at": "ISSUED"},
        {"outcome": "Printer fixed"}, id="complete",
    ),
    pytest.param(
        "scheduling.no_show", {"note": "Nobody home"}, "no_show", "APPOINTMENT_NO_SHOW",
        "Nobody home", {"party": "customer", "marked_at": "ISSUED"}, {"party": "customer"}, id="no_show",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("action", "extra", "status", "event_type", "notes", "output_fields", "payload_fields"), LIFECYCLE)
def test_status_change_keeps_the_row_appends_notes_audits_and_announces(stack, tenant, owner, action, extra, status, event_type, notes, output_fields, payload_fields):
    issued = tenant.at(**ISSUED)
    command_id, reply = send(stack, tenant, action, {"entry_id": tenant.id("visit"), **extra}, issued_at=iso(issued))
    out = ok(reply)
    assert out["entry_id"] == tenant.id("visit") and out["updated_entry_id"] == tenant.id("visit")
    assert out["status"] == status and out["event_type"] == event_type
    for name, value in output_fields.items():
        assert out[name] == (iso(issued) if value == "ISSUED" else value), name

    row = entry_row(owner, tenant, tenant.id("visit"))
    assert row is not None and row.status == status and row.notes == notes
    assert row.scheduled_start == tenant.at(1, 10) and row.scheduled_end == tenant.at(1, 11)
    assert assignees(owner, tenant, tenant.id("visit")) == {tenant.id("tech1")}

    (audit,) = audit_rows(owner, tenant)
    assert audit.operation == f"workflow_action:{action}"
    assert audit.table_name == "schedule_entries" and audit.record_id == tenant.id("visit")
    assert audit.details["command_id"] == command_id

    (event,) = events(stack, command_id, 1)
    record = event["record"]
    assert record["eventType"] == event_type and record["causationId"] == command_id
    assert record["payload"]["appointmentId"] == tenant.id("visit") and record["payload"]["ticketId"] == tenant.id("ticket1")
    for name, value in payload_fields.items():
        assert record["payload"][name] == value, name
    assert event["key"] == f"{tenant.tenant}:{tenant.id('visit')}"


def test_no_show_of_the_agent_names_the_agent(stack, tenant):
    command_id, reply = send(stack, tenant, "scheduling.no_show", {"entry_id": tenant.id("visit"), "party": "agent"})
    assert ok(reply)["party"] == "agent"
    (event,) = events(stack, command_id, 1)
    assert event["record"]["payload"]["party"] == "agent"


def test_cancelling_an_already_cancelled_entry_is_ok_without_an_event(stack, tenant, owner):
    first_id, first = send(stack, tenant, "scheduling.cancel", {"entry_id": tenant.id("visit")})
    assert ok(first)["event_type"] == "APPOINTMENT_CANCELED"
    second_id, second = send(stack, tenant, "scheduling.cancel", {"entry_id": tenant.id("visit")})
    out = ok(second)
    assert out["status"] == "cancelled" and out["event_type"] is None
    assert entry_row(owner, tenant, tenant.id("visit")).status == "cancelled"
    events(stack, first_id, 1)
    events(stack, second_id, 0)


def test_status_change_of_a_missing_entry_is_not_found(stack, tenant):
    missing = str(uuid.uuid4())
    err = error(send(stack, tenant, "scheduling.cancel", {"entry_id": missing})[1], "NOT_FOUND")
    assert err["details"] == {"entry_id": missing}


def test_status_change_by_a_technician_is_permission_denied(stack, tenant, owner):
    err = error(send(stack, tenant, "scheduling.complete", {"entry_id": tenant.id("visit")}, actor="tech1")[1], "PERMISSION_DENIED")
    assert err["details"] == {"resource": "user_schedule", "action": "update"}
    assert entry_row(owner, tenant, tenant.id("visit")).status == "scheduled"


def test_a_cancelled_entry_no_longer_blocks_its_slot(stack, tenant):
    ok(send(stack, tenant, "scheduling.cancel", {"entry_id": tenant.id("visit")})[1])
    out = ok(send(stack, tenant, "scheduling.create_entry", create_input(tenant, ("tech1",), day=1, hour=10))[1])
    assert out["start"] == iso(tenant.at(1, 10))


# --- time-less ad-hoc entries ----------------------------------------------------------------------------------


def test_a_time_less_ad_hoc_entry_can_be_found_searched_and_cancelled(stack, tenant, owner):
    entry_id = insert_entry(owner, tenant, "todo", "Call vendor about toner", ["tech1"])

    found = find(stack, tenant, entry_id)
    assert found["found"] is True
    assert found["entry"]["scheduled_start"] is None and found["entry"]["scheduled_end"] is None
    assert found["entry"]["title"] == "Call vendor about toner"

    (hit,) = ok(search(stack, tenant, query="toner"))["entries"]
    assert hit["entry_id"] == entry_id and hit["scheduled_start"] is None
    assert entry_id in ids(ok(search(stack, tenant, assigned_user_ids=[tenant.id("tech1")])))

    command_id, reply = send(stack, tenant, "scheduling.cancel", {"entry_id": entry_id, "reason": "Done by phone"})
    out = ok(reply)
    assert out["status"] == "cancelled" and out["event_type"] is None
    row = entry_row(owner, tenant, entry_id)
    assert row.status == "cancelled" and row.scheduled_start is None
    events(stack, command_id, 0)
