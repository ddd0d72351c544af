"""The relay deletes published outbox rows past OUTBOX_RETENTION_HOURS, and nothing else."""
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from consumer import relay
from consumer.database import make_engine
from consumer.embedded import wait_until
from consumer.metrics import Metrics
from consumer.relay import Relay
from schemas.tables import event_outbox
from tests.conftest import new_tenant
from tests.harness import topic_settings

pytestmark = pytest.mark.integration


def outbox_row(tenant: str, topic: str, created: datetime, published: datetime | None) -> dict:
    return {
        "tenant": tenant, "kind": "reply", "topic": topic, "message_key": b"k", "message_value": b"v", "headers": [],
        "command_id": str(uuid.uuid4()), "created_at": created, "published_at": published,
    }  # fmt: skip


def test_the_relay_deletes_rows_published_before_the_retention_and_keeps_the_rest(private_db, monkeypatch):
    settings, owner = private_db
    settings = replace(topic_settings(settings, f"r{uuid.uuid4().hex[:10]}"), outbox_retention_hours=1)
    tenant = new_tenant(owner).tenant
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(hours=3), now - timedelta(minutes=10)
    rows = {
        "expired": [outbox_row(tenant, settings.replies_topic, old, old + timedelta(seconds=1)) for _ in range(3)],
        # Created long ago but published only lately (the relay was down): still inside its retention.
        "late": [outbox_row(tenant, settings.replies_topic, old, recent)],
        "recent": [outbox_row(tenant, settings.replies_topic, recent, recent)],
        # Never deleted unpublished: the relay publishes it now, and it then has its full retention.
        "waiting": [outbox_row(tenant, settings.replies_topic, old, None)],
    }
    with owner.begin() as conn:
        conn.execute(event_outbox.insert(), [r for group in rows.values() for r in group])
    # A chunk of one: the leader goes on chunk after chunk until nothing is past the retention.
    monkeypatch.setattr(relay, "PRUNE_CHUNK", 1)
    engine = make_engine(settings.database_url)
    metrics = Metrics()
    publisher = Relay(engine, settings, poll_interval=0.1, metrics=metrics)
    thread = threading.Thread(target=publisher.run)
    thread.start()

    def left() -> dict[str, datetime | None]:
        with owner.connect() as conn:
            found = conn.execute(select(event_outbox.c.command_id, event_outbox.c.published_at).where(event_outbox.c.tenant == tenant))
            return {str(command_id): published for command_id, published in found}

    try:
        wait_until(lambda: len(left()) == 3 and all(left().values()), 30, "the expired rows to go and the waiting one to be published")
    finally:
        publisher.stop()
        thread.join(30)
        engine.dispose()
    kept = left()
    assert set(kept) == {r["command_id"] for group in ("late", "recent", "waiting") for r in rows[group]}
    assert metrics.registry.get_sample_value("schedule_consumer_outbox_pruned_total") == 3


def test_no_row_is_deleted_when_retention_is_off(private_db):
    settings, owner = private_db
    settings = replace(settings, outbox_retention_hours=0)
    tenant = new_tenant(owner).tenant
    long_ago = datetime.now(timezone.utc) - timedelta(days=400)
    row = outbox_row(tenant, settings.replies_topic, long_ago, long_ago)
    with owner.begin() as conn:
        conn.execute(event_outbox.insert(), [row])
    engine = make_engine(settings.database_url)
    publisher = Relay(engine, settings, metrics=Metrics())
    try:
        publisher.prune_when_due()
    finally:
        publisher.stop()
        engine.dispose()
    with owner.connect() as conn:
        assert conn.execute(select(event_outbox.c.command_id).where(event_outbox.c.command_id == row["command_id"])).scalar() is not None
