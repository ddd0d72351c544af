"""The relay killed between the database commit and publishing."""
import pytest
from sqlalchemy import text

from consumer.embedded import wait_until
from tests.faults import ledger

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def outbox_rows(owner, tenants, published: bool) -> int:
    with owner.connect() as conn:
        return conn.execute(
            text(f"select count(*) from event_outbox where tenant = any(cast(:t as uuid[])) and published_at is {'not ' if published else ''}null"),
            {"t": [x.tenant for x in tenants]},
        ).scalar()


def test_relay_killed_mid_publish_publishes_everything_once_restarted(observer, owner, tenants, spawn):
    stream = ledger.build(tenants, units_per_tenant=145)
    total = len(stream.commands)
    observer.send_many(stream.commands, stream.partition_of)

    # The consumers commit; nothing is published until a relay runs.
    consumer = spawn("consumer", only="consumer")
    wait_until(lambda: ledger.applied(owner, stream) == total, 180, "the whole stream applied")
    assert consumer.terminate() == 0
    pending = outbox_rows(owner, tenants, published=False)
    assert pending == total + stream.events  # a reply and the events of every command

    relay = spawn("relay-1", only="relay")
    wait_until(lambda: outbox_rows(owner, tenants, published=True) > 0, 60, "the relay to publish a first chunk")
    relay.kill()
    assert outbox_rows(owner, tenants, published=False) > 0, "the relay died with rows committed but not published"

    spawn("relay-2", only="relay")
    wait_until(lambda: outbox_rows(owner, tenants, published=False) == 0, 60, "the second relay to publish the rest")
    observer.quiesce(60)
    ledger.check(owner, stream, observer.seen.events, observer.seen.replies)
