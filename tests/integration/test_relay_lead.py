"""The relay's lead: a relay that cannot publish lets another replica's relay take over."""
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from consumer.database import make_engine
from consumer.embedded import free_port, wait_until
from consumer.relay import Relay
from schemas.tables import event_outbox
from tests.conftest import new_tenant
from tests.harness import topic_settings

pytestmark = pytest.mark.integration


def test_a_relay_cut_off_from_the_broker_gives_up_the_lead_to_one_that_is_not(private_db):
    settings, owner = private_db
    settings = topic_settings(settings, f"l{uuid.uuid4().hex[:10]}")
    tenant = new_tenant(owner).tenant
    command_id = str(uuid.uuid4())
    with owner.begin() as conn:
        conn.execute(
            event_outbox.insert(),
            {
                "tenant": tenant, "kind": "reply", "topic": settings.replies_topic, "message_key": b"k", "message_value": b"v",
                "headers": [], "command_id": command_id, "created_at": datetime.now(timezone.utc), "published_at": None,
            },
        )  # fmt: skip

    # Nothing listens on this port: every message it produces times out.
    cut_off = replace(settings, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_overrides={"message.timeout.ms": "300"})
    engines = [make_engine(settings.database_url), make_engine(settings.database_url)]
    failing = Relay(engines[0], cut_off, poll_interval=1.0)
    healthy = Relay(engines[1], settings, poll_interval=0.1)
    threads = [threading.Thread(target=failing.run)]
    threads[0].start()
    try:
        wait_until(lambda: failing._leader, 10, "the cut-off relay to lead first")
        threads.append(threading.Thread(target=healthy.run))
        threads[1].start()

        def published() -> bool:
            with owner.connect() as conn:
                return conn.execute(select(event_outbox.c.published_at).where(event_outbox.c.command_id == command_id)).scalar() is not None

        wait_until(published, 30, "the healthy relay to lead and publish the row")
    finally:
        for relay, thread in zip((failing, healthy), threads):
            relay.stop()
            thread.join(30)
        for engine in engines:
            engine.dispose()
