"""The service's HTTP port (/metrics, /healthz, /readyz, /status), its log lines and trace context,
observed from outside while it works against the real broker and database."""
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import make_url

from consumer.embedded import free_port, wait_until
from consumer.logs import JsonFormatter
from consumer.relay import LEADER_LOCK
from handlers.timeutil import iso
from tests.conftest import new_tenant
from tests.harness import Stack, topic_settings

pytestmark = pytest.mark.integration

RESCHEDULE = "scheduling.reschedule"


def reschedule(tenant, hour: int = 14, hours: int = 1, entry: str = "visit") -> dict[str, Any]:
    start = tenant.at(1, hour)
    return {
        "tenant_id": tenant.tenant,
        "action": RESCHEDULE,
        "actor": {"user_id": tenant.id("dispatcher")},
        "correlation_id": f"corr-{uuid.uuid4().hex[:8]}",
        "input": {"entry_id": tenant.id(entry), "window": {"start": iso(start), "end": iso(start + timedelta(hours=hours))}},
    }


def observed_settings(base, prefix: str):
    """Settings of a service that serves its HTTP port, reports librdkafka statistics
    often and has liveness bounds short enough for a test."""
    return topic_settings(
        replace(
            base, schema_registry_url="mock://tests", metrics_port=free_port(),
            health_poll_timeout_s=2, health_batch_timeout_s=3,
            kafka_overrides={**base.kafka_overrides, "statistics.interval.ms": "200"},
        ),
        f"{prefix}{uuid.uuid4().hex[:10]}",
    )  # fmt: skip


def get(stack: Stack, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.settings.metrics_port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(stack: Stack, path: str) -> tuple[int, dict[str, Any]]:
    status, body = get(stack, path)
    return status, json.loads(body)


class Scrape:
    def __init__(self, stack: Stack) -> None:
        status, body = get(stack, "/metrics")
        assert status == 200
        self.samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.samples)


@pytest.fixture(scope="module")
def observed(base_settings, owner, registry):
    stack = Stack(observed_settings(base_settings, "o"), owner, registry)
    wait_until(lambda: get(stack, "/readyz")[0] == 200, 30, "the service to be ready")
    yield stack
    stack.close()


def test_metrics_count_every_outcome_and_the_outbox(observed, owner):
    tenant = new_tenant(owner)
    before = Scrape(observed)

    applied = reschedule(tenant)
    applied_id = observed.send(applied)
    assert observed.reply(applied_id)["status"] == "OK"
    rejected_id = observed.send(reschedule(tenant, hours=0))
    assert observed.reply(rejected_id)["error"]["code"] == "VALIDATION_ERROR"
    observed.send({**applied, "command_id": applied_id})
    observed.send({**reschedule(tenant, hour=16), "command_id": applied_id})
    observed.send_raw(b"{not json", key=b"metrics-garbage")
    wait_until(lambda: len(observed.replies(applied_id)) == 3, 30, "both duplicates answered")
    observed.dead_letter(lambda d: d["key"] == b"metrics-garbage")
    observed.quiesce()

    def moved(name: str, **labels: str) -> float:
        return Scrape(observed)(name, **labels) - before(name, **labels)

    wait_until(lambda: moved("schedule_consumer_publish_latency_seconds_count", kind="reply") >= 2, 10, "the relay's acknowledgements")
    after = Scrape(observed)

    def delta(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    processed = "schedule_consumer_commands_processed_total"
    assert delta(processed, action=RESCHEDULE, outcome="applied") == 1
    assert delta(processed, action=RESCHEDULE, outcome="rejected") == 1
    assert delta(processed, action=RESCHEDULE, outcome="duplicate") == 2
    assert delta(processed, action="unknown", outcome="dead_lettered") == 1
    assert after.total("schedule_consumer_commands_received_total") - before.total("schedule_consumer_commands_received_total") >= 5
    assert delta("schedule_consumer_dead_letters_total", error_class="InvalidJson") == 1
    assert delta("schedule_consumer_inbox_duplicates_total", body="same") == 1
    assert delta("schedule_consumer_inbox_duplicates_total", body="different") == 1
    assert delta("schedule_consumer_handler_duration_seconds_count", action=RESCHEDULE) == 2
    assert delta("schedule_consumer_batch_transaction_duration_seconds_count") >= 2
    # Two replies through the outbox, two duplicates answered directly.
    assert delta("schedule_consumer_command_reply_seconds_count", action=RESCHEDULE) == 4
    assert delta("schedule_consumer_publish_latency_seconds_count", kind="reply") == 2
    assert delta("schedule_consumer_publish_latency_seconds_count", kind="event") == 1
    assert delta("schedule_consumer_outbox_published_total", kind="event") == 1
    assert after("schedule_consumer_outbox_backlog", kind="event") == 0
    assert after("schedule_consumer_outbox_backlog", kind="reply") == 0
    assert after("schedule_consumer_outbox_oldest_unpublished_age_seconds") == 0
    assert after("schedule_consumer_rebalances_total", kind="assigned") >= 1
    assert after("schedule_consumer_assigned_partitions") == 3
    assert after("schedule_consumer_paused_partitions") == 0
    assert after("schedule_consumer_seconds_since_poll") < 2

    def lag() -> dict[str, float]:
        scrape = Scrape(observed)
        return {p: scrape("schedule_consumer_lag_messages", topic=observed.settings.commands_topic, partition=p) for p in "012"}

    wait_until(lambda: Scrape(observed).has("schedule_consumer_lag_messages") and lag() == {"0": 0, "1": 0, "2": 0}, 10, "lag 0 on every partition")


def test_status_reports_each_partition_and_the_outbox(observed, owner):
    tenant = new_tenant(owner)
    command_id = observed.send(reschedule(tenant))
    observed.reply(command_id)

    def settled() -> dict[str, Any]:
        status, body = get_json(observed, "/status")
        assert status == 200
        return body

    wait_until(lambda: any(p["committed"] for p in settled()["partitions"]), 10, "a committed offset in /status")
    body = settled()
    assert body["consumer_group"] == observed.settings.consumer_group
    assert sorted(p["partition"] for p in body["partitions"]) == [0, 1, 2]
    for p in body["partitions"]:
        assert set(p) == {"topic", "partition", "position", "committed", "end", "lag", "paused"}
        assert p["topic"] == observed.settings.commands_topic and p["paused"] is False
        if p["committed"] is not None:
            assert p["lag"] == p["end"] - p["committed"] >= 0
    assert set(body["outbox"]) == {"backlog", "by_kind", "oldest_age_seconds"}
    assert isinstance(body["outbox"]["backlog"], int)
    assert body["statistics_at"] and body["seconds_since_poll"] < 2


def test_healthz_fails_while_a_command_is_stuck_and_recovers(observed, owner):
    tenant = new_tenant(owner)
    wait_until(lambda: get(observed, "/healthz")[0] == 200, 10, "a healthy service")
    with owner.connect() as holder:
        # The handler waits for this row lock: the batch runs past HEALTH_BATCH_TIMEOUT_S without a poll.
        holder.execute(
            text("select 1 from schedule_entries where tenant = :t and entry_id = :e for update"),
            {"t": tenant.tenant, "e": tenant.id("visit")},
        )
        command_id = observed.send(reschedule(tenant))
        wait_until(lambda: get(observed, "/healthz")[0] == 503, 15, "/healthz to fail")
        status, body = get_json(observed, "/healthz")
        assert status == 503 and body["status"] == "unavailable"
        assert "a batch has run" in body["reason"] and body["batch_seconds"] > 3
        assert observed.replies(command_id) == []
        holder.rollback()
    assert observed.reply(command_id)["status"] == "OK"
    wait_until(lambda: get(observed, "/healthz")[0] == 200, 10, "/healthz to recover")


def test_traceparent_travels_from_the_command_to_its_reply_and_events(observed, owner):
    tenant = new_tenant(owner)
    first, again = (f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" for _ in range(2))
    command = {**reschedule(tenant), "command_id": str(uuid.uuid4())}
    observed.send(command, headers=[("traceparent", first.encode())])
    assert observed.reply(command["command_id"])["_headers"]["traceparent"] == first
    (event,) = observed.wait_events(command["command_id"], 1)
    assert event["headers"]["traceparent"] == first
    # A redelivery is answered directly from the inbox, in the trace of the message that asked.
    observed.send(command, headers=[("traceparent", again.encode())])
    duplicate = observed.reply(command["command_id"], nth=2)
    assert duplicate["duplicate"] is True and duplicate["_headers"]["traceparent"] == again


def test_every_command_log_line_is_one_json_object_with_the_command_fields(observed, owner, caplog):
    caplog.set_level(logging.INFO, logger="schedule_consumer")
    tenant = new_tenant(owner)
    command = reschedule(tenant)
    command_id = observed.send(command)
    observed.reply(command_id)
    observed.send_raw(json.dumps({**command, "command_id": str(uuid.uuid4()), "action": "scheduling.teleport"}).encode(), key=b"log-teleport")
    observed.dead_letter(lambda d: d["key"] == b"log-teleport")

    def line(predicate) -> dict[str, Any]:
        wait_until(lambda: any(predicate(r) for r in caplog.records), 10, "the log line")
        return json.loads(JsonFormatter().format(next(r for r in caplog.records if predicate(r))))

    applied = line(lambda r: getattr(r, "command_id", None) == command_id and getattr(r, "outcome", None) == "applied")
    assert {k: applied[k] for k in ("command_id", "tenant_id", "action", "correlation_id", "outcome")} == {
        "command_id": command_id, "tenant_id": tenant.tenant, "action": RESCHEDULE,
        "correlation_id": command["correlation_id"], "outcome": "applied",
    }  # fmt: skip
    assert isinstance(applied["partition"], int) and isinstance(applied["offset"], int)
    dead = line(lambda r: getattr(r, "error_class", None) == "UnknownAction" and getattr(r, "tenant_id", None) == tenant.tenant)
    assert dead["outcome"] == "dead_lettered" and dead["correlation_id"] == command["correlation_id"]
    assert {"command_id", "partition", "offset"} <= set(dead)


# --- a service on a database of its own, which the tests take away ------------------------


def test_outbox_backlog_grows_while_no_relay_leads_and_drains_after(private_db, registry):
    settings, owner = private_db
    tenant = new_tenant(owner)
    with owner.connect() as holder:
        # Another replica's relay leads: this one publishes nothing.
        holder.execute(text("select pg_advisory_lock(:k)"), {"k": LEADER_LOCK})
        holder.commit()
        stack = Stack(observed_settings(settings, "b"), owner, registry)
        try:
            command_id = stack.send(reschedule(tenant))
            wait_until(lambda: Scrape(stack)("schedule_consumer_outbox_backlog", kind="reply") == 1, 30, "the reply to wait in the outbox")
            held = time.monotonic()
            wait_until(lambda: Scrape(stack)("schedule_consumer_outbox_oldest_unpublished_age_seconds") > 0.5, 10, "the backlog to age")
            scrape = Scrape(stack)
            assert scrape("schedule_consumer_outbox_backlog", kind="event") == 1
            assert scrape("schedule_consumer_commands_processed_total", action=RESCHEDULE, outcome="applied") == 1
            assert not scrape.has("schedule_consumer_publish_latency_seconds_count")
            status, body = get_json(stack, "/status")
            assert body["outbox"]["backlog"] == 2 and body["outbox"]["by_kind"] == {"event": 1, "reply": 1}
            assert body["outbox"]["oldest_age_seconds"] > 0.5
            assert stack.replies(command_id) == []

            holder.execute(text("select pg_advisory_unlock(:k)"), {"k": LEADER_LOCK})
            holder.commit()
            waited = time.monotonic() - held
            assert stack.reply(command_id)["status"] == "OK"
            wait_until(lambda: Scrape(stack)("schedule_consumer_outbox_backlog", kind="reply") == 0, 10, "the outbox to drain")
            wait_until(lambda: Scrape(stack)("schedule_consumer_command_reply_seconds_count", action=RESCHEDULE) == 1, 10, "the reply's critical time")
            scrape = Scrape(stack)
            assert scrape("schedule_consumer_publish_latency_seconds_count", kind="event") == 1
            assert scrape("schedule_consumer_publish_latency_seconds_sum", kind="reply") >= waited
            assert scrape("schedule_consumer_command_reply_seconds_sum", action=RESCHEDULE) >= waited
            assert scrape("schedule_consumer_outbox_oldest_unpublished_age_seconds") == 0
        finally:
            stack.close()


def test_readyz_reports_the_database_down_while_it_is(private_db, registry, postgres):
    settings, owner = private_db
    stack = Stack(observed_settings(settings, "r"), owner, registry)
    database = make_url(settings.database_url).database
    try:
        wait_until(lambda: get(stack, "/readyz")[0] == 200, 30, "the service to be ready")
        status, body = get_json(stack, "/readyz")
        assert body["checks"]["database"] == {"ok": True} and body["checks"]["schema_registry"] == {"ok": True}
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            admin.execute(f'alter database "{database}" allow_connections false')
            try:
                admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (database,))
                wait_until(lambda: get(stack, "/readyz")[0] == 503, 15, "/readyz to fail")
                status, body = get_json(stack, "/readyz")
                assert body["checks"]["database"]["ok"] is False
                assert "not currently accepting connections" in body["checks"]["database"]["detail"]
                assert body["checks"]["kafka"]["ok"] is True
                # An outage of the database is not the process's fault: liveness holds.
                assert get(stack, "/healthz")[0] == 200
                assert get_json(stack, "/status")[1]["outbox"]["error"]
            finally:
                admin.execute(f'alter database "{database}" allow_connections true')
        wait_until(lambda: get(stack, "/readyz")[0] == 200, 15, "/readyz to recover")
    finally:
        stack.close()
