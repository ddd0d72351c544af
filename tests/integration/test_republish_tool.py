"""`schedule-consumer events republish`: stored events sent again, byte for byte, in commit order."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from consumer.embedded import wait_until
from handlers.timeutil import iso
from tests.integration.test_walking_skeleton import reschedule

pytestmark = pytest.mark.integration


def window(tenant, day, hour, hours=1):
    return {"start": iso(tenant.at(day, hour)), "end": iso(tenant.at(day, hour + hours))}


def command(tenant, action, **input_):
    return {"tenant_id": tenant.tenant, "action": action, "actor": {"user_id": tenant.id("dispatcher")}, "input": input_}


def ids_of(stack, event_ids):
    with stack._lock:
        return [e["record"]["id"] for e in stack.seen.events if e["record"]["id"] in event_ids]


def test_republish_re_emits_the_same_events_in_order_filtered_by_appointment_and_time(stack, tenant, cli):
    before_all = datetime.now(timezone.utc) - timedelta(seconds=1)
    created = stack.send(command(
        tenant, "scheduling.create_entry", assigned_user_ids=[tenant.id("tech1"), tenant.id("tech2")], title="Install",
        window=window(tenant, 5, 9, 2), link={"type": "ticket", "id": tenant.id("ticket2")},
    ), key=tenant.tenant)  # fmt: skip
    entry = stack.reply(created)["output"]["entry_id"]
    other = stack.send(reschedule(tenant, hour=16))
    stack.wait_events(created, 3)
    stack.wait_events(other, 1)
    between = datetime.now(timezone.utc)
    moved = stack.send(command(tenant, "scheduling.reschedule", entry_id=entry, window=window(tenant, 6, 9, 2)), key=tenant.tenant)
    canceled = stack.send(command(tenant, "scheduling.cancel", entry_id=entry, reason="postponed"), key=tenant.tenant)
    stack.wait_events(canceled, 1)
    stack.quiesce()
    first = [e["record"]["id"] for c in (created, moved, canceled) for e in stack.events_of(c)]
    assert len(first) == 5
    others = {e["record"]["id"] for e in stack.events_of(other)}

    status, out, err = cli(stack.settings, "events", "republish", "--since", iso(before_all), "--appointment", entry, "--dry-run", "--json")
    assert status == 0, err
    dry = json.loads(out)
    assert [e["event_id"] for e in dry["events"]] == first and dry["republished"] == 0
    stack.quiesce()
    assert ids_of(stack, set(first)) == first

    status, out, err = cli(stack.settings, "events", "republish", "--since", iso(before_all), "--appointment", entry)
    assert status == 0, err
    assert out.startswith(f"Republished 5 events to {stack.settings.events_topic} (the broker acknowledged every one):")
    wait_until(lambda: len(ids_of(stack, set(first))) == 10, 30, "the republished events")
    assert ids_of(stack, set(first)) == first + first
    copies = [e for e in stack.seen.events if e["record"]["id"] == first[0]]
    assert copies[0]["key"] == copies[1]["key"] == f"{tenant.tenant}:{entry}"
    assert copies[0]["headers"] == copies[1]["headers"]
    assert ids_of(stack, others) == list(others)

    status, out, err = cli(stack.settings, "events", "republish", "--since", iso(between), "--appointment", entry, "--json")
    assert status == 0, err
    assert [e["event_id"] for e in json.loads(out)["events"]] == first[3:]
    wait_until(lambda: len(ids_of(stack, set(first))) == 12, 30, "the events since the middle")
    assert ids_of(stack, set(first)) == first + first + first[3:]

    status, out, err = cli(stack.settings, "events", "republish", "--since", iso(before_all), "--tenant", str(uuid.uuid4()), "--dry-run", "--json")
    assert status == 0 and json.loads(out)["events"] == []


def test_republish_rejects_bad_filters(stack, cli):
    status, _, err = cli(stack.settings, "events", "republish", "--since", "2027-01-01T00:00:00Z", "--appointment", "visit")
    assert status == 2 and "--appointment must be a UUID" in err
    status, _, err = cli(stack.settings, "events", "republish", "--since", "2027-01-02T00:00:00Z", "--until", "2027-01-01T00:00:00Z")
    assert status == 2 and "--until must be after --since" in err

