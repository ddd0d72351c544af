"""Actions on recurring series: occurrences by virtual id, scopes single / future / all.

The demo tenant's "standup" is a weekly ad-hoc series (tech1 + tech2) on
Tuesdays 09:00-10:00 from day 1 (BASE is a Monday), so its occurrences start
on day 1, 8, 15, ... and are addressed as f"{master}_{epoch ms}".
"""
import json
import uuid
from datetime import date, datetime, timezone
from typing import Any

import pytest

from handlers.timeutil import iso, to_millis
from tests.integration.test_actions import (
    assignees,
    audit_rows,
    create_input,
    entry_row,
    error,
    events,
    find,
    is_uuid,
    occurrence,
    ok,
    send,
    warm,  # noqa: F401 (the module-scoped warm-up fixture)
    window,
)

pytestmark = pytest.mark.integration


def standup(tenant, day: int, hour: int = 9) -> str:
    return occurrence(tenant.id("standup"), tenant.at(day, hour))


def pattern_end_date(pattern: Any) -> date | None:
    """The UTC date of a stored pattern's inclusive endDate (a JSON object or string)."""
    data = json.loads(pattern) if isinstance(pattern, str) else pattern
    value = data.get("endDate")
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo is None else parsed.astimezone(timezone.utc)).date()


def create_ticket_series(stack, tenant, **envelope: Any) -> tuple[str, str]:
    """A weekly series for tech2 linked to ticket2, Wednesdays 16:00-17:00 from day 2: (command_id, master id)."""
    inp = create_input(
        tenant, ("tech2",), title="Weekly patching", day=2, hour=16,
        link={"type": "ticket", "id": tenant.id("ticket2")},
        recurrence={"frequency": "weekly", "interval": 1, "daysOfWeek": [2]},
    )  # fmt: skip
    command_id, reply = send(stack, tenant, "scheduling.create_entry", inp, **envelope)
    return command_id, ok(reply)["entry_id"]


# --- reading occurrences ------------------------------------------------------------


def test_find_entry_resolves_generated_occurrences(stack, tenant):
    for day in (1, 8, 15):
        found = find(stack, tenant, standup(tenant, day))
        assert found["found"] is True, day
        entry = found["entry"]
        assert entry["entry_id"] == standup(tenant, day) and entry["original_entry_id"] == tenant.id("standup")
        assert entry["scheduled_start"] == iso(tenant.at(day, 9)) and entry["scheduled_end"] == iso(tenant.at(day, 10))
        assert entry["is_recurring"] is True and entry["title"] == "Weekly service review"
        assert sorted(entry["assigned_user_ids"]) == sorted([tenant.id("tech1"), tenant.id("tech2")])


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param(lambda t: f"{t.id('standup')}_{to_millis(t.at(8, 9)) + 1}", id="one-millisecond-off"),
        pytest.param(lambda t: occurrence(t.id("standup"), t.at(9, 9)), id="a-wednesday"),
        pytest.param(lambda t: occurrence(t.id("standup"), t.at(8, 10)), id="wrong-time-of-day"),
        pytest.param(lambda t: occurrence(t.id("standup"), t.at(-6, 9)), id="before-the-series-starts"),
    ],
)
def test_an_occurrence_the_series_does_not_generate_does_not_exist(stack, tenant, owner, reference):
    ref = reference(tenant)
    assert find(stack, tenant, ref) == {"found": False, "entry": None}
    err = error(send(stack, tenant, "scheduling.reschedule", {"entry_id": ref, "window": window(tenant, 8, 14)})[1], "NOT_FOUND")
    assert err["details"]["entry_id"] == ref
    assert audit_rows(owner, tenant) == []


# --- scope single -----------------------------------------------------------------------


def test_reschedule_one_occurrence_extracts_a_standalone_entry(stack, tenant, owner):
    next_week = standup(tenant, 8)
    command_id, reply = send(stack, tenant, "scheduling.reschedule",
                             {"entry_id": next_week, "window": window(tenant, 8, 14), "recurrence_scope": "single"})  # fmt: skip
    out = ok(reply)
    standalone = out["updated_entry_id"]
    assert out["entry_id"] == next_week
    assert is_uuid(standalone) and standalone != tenant.id("standup")
    assert out["previous_start"] == iso(tenant.at(8, 9)) and out["previous_end"] == iso(tenant.at(8, 10))
    assert out["new_start"] == iso(tenant.at(8, 14)) and out["new_end"] == iso(tenant.at(8, 15))
    assert out["recurrence_scope"] == "single"
    assert out["event_type"] is None  # the standup is ad hoc

    assert find(stack, tenant, next_week) == {"found": False, "entry": None}
    entry = find(stack, tenant, standalone)["entry"]
    assert entry["is_recurring"] is False and entry["title"] == "Weekly service review"
    assert entry["scheduled_start"] == iso(tenant.at(8, 14)) and entry["scheduled_end"] == iso(tenant.at(8, 15))
    assert sorted(entry["assigned_user_ids"]) == sorted([tenant.id("tech1"), tenant.id("tech2")])
    row = entry_row(owner, tenant, standalone)
    assert row.is_recurring is False and row.recurrence_pattern is None

    following = find(stack, tenant, standup(tenant, 15))
    assert following["found"] is True and following["entry"]["scheduled_start"] == iso(tenant.at(15, 9))
    assert find(stack, tenant, standup(tenant, 1))["found"] is True
    master = entry_row(owner, tenant, tenant.id("standup"))
    assert master.is_recurring is True and master.scheduled_start == tenant.at(1, 9)
    assert len(audit_rows(owner, tenant)) == 1
    events(stack, command_id, 0)

    # The moved occurrence is now an exception: writing to it again finds nothing.
    again = send(stack, tenant, "scheduling.reschedule", {"entry_id": next_week, "window": window(tenant, 8, 16)})[1]
    assert error(again, "NOT_FOUND")["details"]["entry_id"] == next_week


def test_reschedule_one_occurrence_of_a_ticket_series_announces_it(stack, tenant):
    _, master = create_ticket_series(stack, tenant)
    ref = occurrence(master, tenant.at(9, 16))
    command_id, reply = send(stack, tenant, "scheduling.reschedule", {"entry_id": ref, "window": window(tenant, 9, 17)})
    out = ok(reply)
    assert out["event_type"] == "APPOINTMENT_RESCHEDULED" and out["updated_entry_id"] != master
    (event,) = events(stack, command_id, 1)
    payload = event["record"]["payload"]
    assert payload["appointmentId"] == out["updated_entry_id"] and payload["ticketId"] == tenant.id("ticket2")
    assert payload["previousStartAt"] == iso(tenant.at(9, 16)) and payload["previousEndAt"] == iso(tenant.at(9, 17))
    assert payload["newStartAt"] == iso(tenant.at(9, 17)) and payload["newEndAt"] == iso(tenant.at(9, 18))
    # The series itself goes on.
    assert find(stack, tenant, occurrence(master, tenant.at(16, 16)))["found"] is True


@pytest.mark.parametrize(
    ("action", "status"),
    [("scheduling.cancel", "cancelled"), ("scheduling.complete", "completed"), ("scheduling.no_show", "no_show")],
)
def test_status_change_of_one_occurrence_keeps_the_others(stack, tenant, owner, action, status):
    next_week = standup(tenant, 8)
    out = ok(send(stack, tenant, action, {"entry_id": next_week, "recurrence_scope": "single"})[1])
    assert out["entry_id"] == next_week and out["status"] == status
    extracted = out["updated_entry_id"]
    assert is_uuid(extracted) and extracted != tenant.id("standup")
    assert out["event_type"] is None  # the standup is ad hoc

    row = entry_row(owner, tenant, extracted)
    assert row.status == status and row.is_recurring is False
    assert row.scheduled_start == tenant.at(8, 9) and row.scheduled_end == tenant.at(8, 10)
    assert assignees(owner, tenant, extracted) == {tenant.id("tech1"), tenant.id("tech2")}

    assert find(stack, tenant, next_week)["found"] is False
    for day in (1, 15):
        other = find(stack, tenant, standup(tenant, day))
        assert other["found"] is True and other["entry"]["status"] == "scheduled", day
    assert entry_row(owner, tenant, tenant.id("standup")).status == "scheduled"
    assert len(audit_rows(owner, tenant)) == 1


# --- scope future ------------------------------------------------------------------------------


def test_reschedule_future_splits_the_series(stack, tenant, owner):
    next_week = standup(tenant, 8)
    out = ok(send(stack, tenant, "scheduling.reschedule",
                  {"entry_id": next_week, "window": window(tenant, 8, 11), "recurrence_scope": "future"})[1])  # fmt: skip
    new_master = out["updated_entry_id"]
    assert is_uuid(new_master) and new_master != tenant.id("standup")
    assert out["new_start"] == iso(tenant.at(8, 11)) and out["recurrence_scope"] == "future"

    old = entry_row(owner, tenant, tenant.id("standup"))
    assert old.scheduled_start == tenant.at(1, 9) and old.is_recurring is True
    end = pattern_end_date(old.recurrence_pattern)
    assert end is not None and end < tenant.at(8, 9).date()

    new = entry_row(owner, tenant, new_master)
    assert new.is_recurring is True and new.recurrence_pattern is not None and new.original_entry_id is None
    assert new.scheduled_start == tenant.at(8, 11) and new.scheduled_end == tenant.at(8, 12)
    assert assignees(owner, tenant, new_master) == {tenant.id("tech1"), tenant.id("tech2")}

    earlier = find(stack, tenant, standup(tenant, 1))
    assert earlier["found"] is True and earlier["entry"]["scheduled_start"] == iso(tenant.at(1, 9))
    assert find(stack, tenant, next_week)["found"] is False
    assert find(stack, tenant, standup(tenant, 15))["found"] is False
    later = find(stack, tenant, occurrence(new_master, tenant.at(15, 11)))
    assert later["found"] is True
    assert later["entry"]["scheduled_start"] == iso(tenant.at(15, 11)) and later["entry"]["scheduled_end"] == iso(tenant.at(15, 12))


@pytest.mark.parametrize(
    ("action", "status"),
    [("scheduling.cancel", "cancelled"), ("scheduling.complete", "completed"), ("scheduling.no_show", "no_show")],
)
def test_status_change_future_keeps_the_occurrence_duration_in_the_new_master(stack, tenant, owner, action, status):
    next_week = standup(tenant, 8)
    out = ok(send(stack, tenant, action, {"entry_id": next_week, "recurrence_scope": "future"})[1])
    new_master = out["updated_entry_id"]
    assert is_uuid(new_master) and new_master != tenant.id("standup") and out["status"] == status

    new = entry_row(owner, tenant, new_master)
    assert new.status == status and new.is_recurring is True
    assert new.scheduled_start == tenant.at(8, 9) and new.scheduled_end == tenant.at(8, 10)

    old = entry_row(owner, tenant, tenant.id("standup"))
    assert old.status == "scheduled"
    end = pattern_end_date(old.recurrence_pattern)
    assert end is not None and end < tenant.at(8, 9).date()
    earlier = find(stack, tenant, standup(tenant, 1))
    assert earlier["found"] is True and earlier["entry"]["status"] == "scheduled"


def test_cancel_future_of_a_ticket_series_announces_the_new_master(stack, tenant):
    _, master = create_ticket_series(stack, tenant)
    ref = occurrence(master, tenant.at(9, 16))
    command_id, reply = send(stack, tenant, "scheduling.cancel", {"entry_id": ref, "recurrence_scope": "future", "reason": "Contract ended"})
    out = ok(reply)
    assert out["event_type"] == "APPOINTMENT_CANCELED" and out["reason"] == "Contract ended"
    (event,) = events(stack, command_id, 1)
    assert event["record"]["payload"]["appointmentId"] == out["updated_entry_id"]
    assert event["record"]["payload"]["ticketId"] == tenant.id("ticket2")
    assert find(stack, tenant, occurrence(master, tenant.at(2, 16)))["entry"]["status"] == "scheduled"


# --- scope all ---------------------------------------------------------------------------------------


def test_reschedule_all_moves_the_master(stack, tenant, owner):
    out = ok(send(stack, tenant, "scheduling.reschedule",
                  {"entry_id": tenant.id("standup"), "window": window(tenant, 1, 8), "recurrence_scope": "all"})[1])  # fmt: skip
    assert out["updated_entry_id"] == tenant.id("standup") and out["recurrence_scope"] == "all"
    assert out["new_start"] == iso(tenant.at(1, 8)) and out["new_end"] == iso(tenant.at(1, 9))

    master = entry_row(owner, tenant, tenant.id("standup"))
    assert master.scheduled_start == tenant.at(1, 8) and master.scheduled_end == tenant.at(1, 9)
    assert master.is_recurring is True and master.recurrence_pattern is not None

    moved = find(stack, tenant, standup(tenant, 8, hour=8))
    assert moved["found"] is True
    assert moved["entry"]["scheduled_start"] == iso(tenant.at(8, 8)) and moved["entry"]["scheduled_end"] == iso(tenant.at(8, 9))
    assert find(stack, tenant, standup(tenant, 8))["found"] is False


# --- conflicts with occurrences ------------------------------------------------------------------


def test_create_entry_over_a_later_occurrence_conflicts_in_fail_mode(stack, tenant):
    err = error(send(stack, tenant, "scheduling.create_entry", create_input(tenant, ("tech2",), day=15, hour=9, minute=30))[1], "CONFLICT")
    details = err["details"]
    assert details["conflicting_user_ids"] == [tenant.id("tech2")] and details["conflict_count"] == 1
    (conflict,) = details["conflicts"]
    assert conflict["user_id"] == tenant.id("tech2") and conflict["entry_id"].startswith(tenant.id("standup"))
    assert conflict["start"] == iso(tenant.at(15, 9)) and conflict["end"] == iso(tenant.at(15, 10))


def test_create_entry_in_shift_mode_moves_past_a_later_occurrence(stack, tenant):
    inp = create_input(tenant, ("tech2",), day=15, hour=9, minute=30, conflict_mode="shift")
    out = ok(send(stack, tenant, "scheduling.create_entry", inp)[1])
    assert out["start"] == iso(tenant.at(15, 10)) and out["end"] == iso(tenant.at(15, 11))


# --- replay: stable event ids ---------------------------------------------------------------------------


def test_the_same_command_id_twice_yields_the_same_single_event(stack, tenant):
    _, master = create_ticket_series(stack, tenant)
    command = {
        "command_id": str(uuid.uuid4()),
        "tenant_id": tenant.tenant,
        "action": "scheduling.reschedule",
        "actor": {"user_id": tenant.id("dispatcher")},
        "input": {"entry_id": occurrence(master, tenant.at(9, 16)), "window": window(tenant, 9, 18)},
    }
    stack.send(command)
    first = stack.reply(command["command_id"], timeout=15)
    stack.send(command)
    second = stack.reply(command["command_id"], nth=2, timeout=15)
    assert ok(first)["event_type"] == "APPOINTMENT_RESCHEDULED"
    assert second["duplicate"] is True and second["output"] == first["output"]
    assert uuid.UUID(first["output"]["updated_entry_id"]).version == 5

    (event,) = events(stack, command["command_id"], 1)
    assert uuid.UUID(event["record"]["id"]).version == 5
    assert event["headers"]["event_id"] == event["record"]["id"]
