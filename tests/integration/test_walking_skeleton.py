"""A command's whole path: topic → database → reply, events and dead letters."""
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from consumer.codecs import Family
from consumer.database import make_engine, set_tenant
from handlers.timeutil import iso
from schemas.tables import audit_logs, event_outbox, schedule_entries

pytestmark = pytest.mark.integration


def reschedule(tenant, entry="visit", actor="dispatcher", day=1, hour=14, hours=1, **input_):
    start = tenant.at(day, hour)
    return {
        "tenant_id": tenant.tenant,
        "action": "scheduling.reschedule",
        "actor": {"user_id": tenant.id(actor)},
        "correlation_id": "corr-1",
        "input": {
            "entry_id": tenant.id(entry),
            "window": {"start": iso(start), "end": iso(start + timedelta(hours=hours))},
            **input_,
        },
    }


def entry_row(owner, tenant, key="visit"):
    with owner.connect() as conn:
        return conn.execute(select(schedule_entries).where(schedule_entries.c.tenant == tenant.tenant, schedule_entries.c.entry_id == tenant.id(key))).one()


def audit_rows(owner, tenant):
    with owner.connect() as conn:
        return conn.execute(select(audit_logs).where(audit_logs.c.tenant == tenant.tenant)).all()


def test_reschedule_applies_the_change_audits_it_and_publishes_one_event(stack, tenant, owner):
    command_id = stack.send(reschedule(tenant, reason="Customer asked"))

    reply = stack.reply(command_id)
    assert reply["status"] == "OK" and reply["duplicate"] is False
    assert reply["correlation_id"] == "corr-1"
    out = reply["output"]
    assert out["previous_start"] == iso(tenant.at(1, 10)) and out["new_start"] == iso(tenant.at(1, 14))
    assert out["event_type"] == "APPOINTMENT_RESCHEDULED" and out["updated_entry_id"] == tenant.id("visit")
    assert out["assigned_user_ids"] == [tenant.id("tech1")]

    row = entry_row(owner, tenant)
    assert row.scheduled_start == tenant.at(1, 14) and row.scheduled_end == tenant.at(1, 15)
    assert row.notes == "Reschedule reason: Customer asked"

    (audit,) = audit_rows(owner, tenant)
    assert audit.operation == "workflow_action:scheduling.reschedule"
    assert audit.table_name == "schedule_entries" and audit.record_id == tenant.id("visit")
    assert audit.details["command_id"] == command_id

    (event,) = stack.wait_events(command_id, 1)
    record = event["record"]
    assert event["schema"] == "psa.scheduling.events.AppointmentRescheduled"
    assert record["eventType"] == "APPOINTMENT_RESCHEDULED" and record["correlationId"] == "corr-1"
    payload = record["payload"]
    assert payload["appointmentId"] == tenant.id("visit") and payload["ticketId"] == tenant.id("ticket1")
    assert payload["previousStartAt"] == iso(tenant.at(1, 10)) and payload["newEndAt"] == iso(tenant.at(1, 15))
    assert payload["tenantId"] == tenant.tenant and payload["actorUserId"] == tenant.id("dispatcher")
    assert event["key"] == f"{tenant.tenant}:{tenant.id('visit')}"
    assert event["headers"]["event_type"] == "APPOINTMENT_RESCHEDULED"
    assert event["headers"]["event_id"] == record["id"] and event["headers"]["causation_id"] == command_id
    assert event["headers"]["content-type"] == "application/vnd.apache.avro"


def test_a_redelivered_command_is_answered_from_the_inbox_and_writes_nothing(stack, tenant, owner):
    command = {**reschedule(tenant), "command_id": "6a0b7c1e-0000-4000-8000-000000000001".replace("0001", tenant.tenant[-4:])}
    stack.send(command)
    first = stack.reply(command["command_id"])
    stack.send(command)
    second = stack.reply(command["command_id"], nth=2)

    assert first["duplicate"] is False and second["duplicate"] is True
    assert second["output"] == first["output"] and second["status"] == "OK"
    stack.quiesce()
    assert len(stack.events_of(command["command_id"])) == 1
    assert len(audit_rows(owner, tenant)) == 1
    with owner.connect() as conn:
        assert conn.execute(select(text("count(*)")).select_from(event_outbox).where(event_outbox.c.command_id == command["command_id"], event_outbox.c.kind == "event")).scalar() == 1


def test_a_domain_error_is_recorded_and_answered_the_same_on_redelivery(stack, tenant, owner):
    command = {**reschedule(tenant, actor="tech1"), "command_id": f"{tenant.tenant[:-12]}00000000beef"}
    stack.send(command)
    first = stack.reply(command["command_id"])
    stack.send(command)
    second = stack.reply(command["command_id"], nth=2)
    assert first["status"] == "ERROR" and first["error"]["code"] == "PERMISSION_DENIED"
    assert first["error"]["details"] == {"resource": "user_schedule", "action": "update"}
    assert second["error"] == first["error"] and second["duplicate"] is True
    assert entry_row(owner, tenant).scheduled_start == tenant.at(1, 10)
    assert audit_rows(owner, tenant) == []


def test_an_entry_of_another_tenant_is_not_found_and_left_alone(stack, tenant, owner):
    from tests.conftest import new_tenant

    other = new_tenant(owner)
    command = reschedule(tenant)
    command["input"]["entry_id"] = other.id("visit")
    reply = stack.reply(stack.send(command))
    assert reply["status"] == "ERROR" and reply["error"]["code"] == "NOT_FOUND"
    assert reply["error"]["details"] == {"entry_id": other.id("visit")}
    assert entry_row(owner, other).scheduled_start == other.at(1, 10)


def test_a_conflict_fails_the_reschedule_in_fail_mode(stack, tenant, owner):
    # tech1's private "dentist" entry sits on day 3, 15:00-16:00.
    reply = stack.reply(stack.send(reschedule(tenant, day=3, hour=15)))
    assert reply["error"]["code"] == "CONFLICT"
    details = reply["error"]["details"]
    assert details["conflict_count"] == 1
    assert details["conflicts"] == [{"entry_id": tenant.id("dentist"), "user_id": tenant.id("tech1"), "start": iso(tenant.at(3, 15)), "end": iso(tenant.at(3, 16))}]
    assert entry_row(owner, tenant).scheduled_start == tenant.at(1, 10)


def test_an_invalid_window_is_a_validation_error_naming_the_field(stack, tenant):
    reply = stack.reply(stack.send(reschedule(tenant, hours=0)))
    assert reply["error"]["code"] == "VALIDATION_ERROR"
    assert reply["error"]["details"]["path"] == "input.window"


def test_a_wrongly_typed_input_field_is_a_validation_error_with_its_path(stack, tenant):
    command = reschedule(tenant)
    command["input"]["window"]["start"] = "next tuesday"
    reply = stack.reply(stack.send(command))
    assert reply["error"]["code"] == "VALIDATION_ERROR"
    assert reply["error"]["details"]["path"] == "input.window.start"


def test_a_workflow_run_acts_as_the_publisher_of_its_definition_version(stack, tenant, owner):
    command = reschedule(tenant)
    command["actor"] = {"workflow_run_id": tenant.id("run")}
    reply = stack.reply(stack.send(command))
    assert reply["status"] == "OK"
    (audit,) = audit_rows(owner, tenant)
    assert audit.user_id == tenant.id("dispatcher")
    assert audit.table_name == "workflow_runs" and audit.record_id == tenant.id("run")


def test_a_workflow_run_of_another_tenant_does_not_resolve(stack, tenant, owner):
    from tests.conftest import new_tenant

    other = new_tenant(owner)
    command = reschedule(tenant)
    command["actor"] = {"workflow_run_id": other.id("run")}
    reply = stack.reply(stack.send(command))
    assert reply["error"]["code"] == "PERMISSION_DENIED"
    assert reply["error"]["message"] == "workflow actor could not be resolved"


@pytest.mark.parametrize("family", [Family.REGISTRY, Family.SINGLE_OBJECT])
def test_avro_commands_get_avro_replies(stack, tenant, family):
    command_id = stack.send(reschedule(tenant, hour=16), family=family)
    reply = stack.reply(command_id)
    assert reply["status"] == "OK" and reply["output"]["new_start"] == iso(tenant.at(1, 16))
    raw = reply["_raw"]
    assert raw[:1] == b"\x00" if family == Family.REGISTRY else raw[:2] == b"\xc3\x01"
    assert reply["_headers"]["content-type"] == "application/vnd.apache.avro"


def test_find_entry_redacts_a_private_entry_for_a_technician_and_shows_it_to_its_assignee(stack, tenant):
    def find(actor, entry="dentist", **extra):
        return stack.reply(stack.send({
            "tenant_id": tenant.tenant, "action": "scheduling.find_entry", "actor": {"user_id": tenant.id(actor)},
            "input": {"entry_id": tenant.id(entry), **extra},
        }))  # fmt: skip

    hidden = find("tech2")["output"]
    assert hidden["found"] is True
    assert hidden["entry"]["title"] == "Busy" and hidden["entry"]["notes"] == "" and hidden["entry"]["work_item_type"] == "ad_hoc"
    assert hidden["entry"]["assigned_user_ids"] == [tenant.id("tech1")]
    assert find("tech1")["output"]["entry"]["title"] == "Dentist"
    assert find("dispatcher")["output"]["entry"]["title"] == "Dentist"
    denied = find("tech2", include_private_details=True)
    assert denied["error"]["code"] == "PERMISSION_DENIED"
    missing = find("tech2", entry="nope")
    assert missing["output"] == {"found": False, "entry": None}


def test_garbage_bytes_are_dead_lettered_untouched_and_the_partition_moves_on(stack, tenant):
    stack.send_raw(b"\x07\xffnot a command", key=b"garbage-key", headers=[("trace", b"x")])
    after = stack.send(reschedule(tenant, hour=17))
    dead = stack.dead_letter(lambda d: d["key"] == b"garbage-key")
    assert dead["value"] == b"\x07\xffnot a command"
    h = dead["headers"]
    assert h["dlq.error.class"] == "UnknownEncoding" and "0x07" in h["dlq.error.message"]
    assert h["dlq.original.topic"] == stack.settings.commands_topic
    assert {"dlq.original.partition", "dlq.original.offset", "dlq.original.timestamp", "dlq.failed.at"} <= set(h)
    assert h["dlq.attempts"] == "1" and h["trace"] == "x"
    assert stack.reply(after)["status"] == "OK"


def test_a_json_command_without_tenant_is_dead_lettered_with_an_error_reply(stack, tenant):
    command = reschedule(tenant)
    del command["tenant_id"]
    command["command_id"] = "0f0f0f0f-1111-4222-8333-444444444444"
    value = json.dumps(command).encode()
    stack.send_raw(value, key=b"no-tenant")
    dead = stack.dead_letter(lambda d: d["key"] == b"no-tenant")
    assert dead["value"] == value
    assert dead["headers"]["dlq.error.class"] == "InvalidEnvelope"
    assert "command.tenant_id: is required" in dead["headers"]["dlq.error.message"]
    reply = stack.reply(command["command_id"])
    assert reply["status"] == "ERROR" and reply["error"]["code"] == "VALIDATION_ERROR"
    assert reply["error"]["details"]["error_class"] == "InvalidEnvelope"


def test_an_unknown_action_is_dead_lettered_with_an_error_reply(stack, tenant):
    command = {**reschedule(tenant), "action": "scheduling.teleport", "command_id": "0f0f0f0f-1111-4222-8333-555555555555"}
    stack.send_raw(json.dumps(command).encode(), key=b"teleport")
    dead = stack.dead_letter(lambda d: d["key"] == b"teleport")
    assert dead["headers"]["dlq.error.class"] == "UnknownAction"
    assert "scheduling.teleport" in dead["headers"]["dlq.error.message"]
    assert stack.reply(command["command_id"])["error"]["code"] == "VALIDATION_ERROR"


def test_rls_binds_the_runtime_role(stack, tenant, owner):
    from tests.conftest import new_tenant

    other = new_tenant(owner)
    runtime = make_engine(stack.settings.database_url)
    try:
        with runtime.begin() as conn:
            assert conn.execute(text("select rolsuper or rolbypassrls from pg_roles where rolname = current_user")).scalar() is False
            set_tenant(conn, tenant.tenant)
            tenants_seen = {r[0] for r in conn.execute(text("select distinct tenant::text from schedule_entries"))}
            assert tenants_seen == {tenant.tenant}
            assert conn.execute(text("select count(*) from schedule_entries where tenant = :t"), {"t": other.tenant}).scalar() == 0
            assert conn.execute(text("select count(*) from users where tenant = :t"), {"t": other.tenant}).scalar() == 0
        with runtime.begin() as conn:
            # No tenant set: nothing at all is visible.
            assert conn.execute(text("select count(*) from schedule_entries")).scalar() == 0
    finally:
        runtime.dispose()
