"""SIGTERM drains within its bound: the batch in hand commits, the relay publishes it, the process exits 0."""
import time
from dataclasses import replace

import pytest
from sqlalchemy import text

from consumer.embedded import wait_until
from tests.faults import ledger

pytestmark = [pytest.mark.integration, pytest.mark.faults]

BOUND_S = 10


def unpublished(owner) -> int:
    with owner.connect() as conn:
        return conn.execute(text("select count(*) from event_outbox where published_at is null")).scalar()


def test_sigterm_mid_stream_commits_publishes_and_exits_within_the_bound(observer, owner, tenants, spawn, fault_settings):
    stream = ledger.build(tenants, units_per_tenant=145)
    observer.send_many(stream.commands, stream.partition_of)
    process = spawn("consumer", replace(fault_settings, shutdown_timeout_s=BOUND_S))
    wait_until(lambda: ledger.applied(owner, stream) >= 0.3 * len(stream.commands), 120, "a third of the stream applied")

    asked = time.monotonic()
    assert process.terminate(timeout=BOUND_S + 5) == 0
    assert time.monotonic() - asked < BOUND_S
    applied = ledger.applied(owner, stream)
    assert 0 < applied < len(stream.commands), "stopped mid-stream"
    assert unpublished(owner) == 0, "what committed was published before the exit"
    assert "drain" in process.log_path.read_text()

    # The next process takes up exactly where the last commit left off.
    spawn("consumer-2")
    wait_until(lambda: ledger.applied(owner, stream) == len(stream.commands), 120, "the rest of the stream applied")
    observer.quiesce(60)
    ledger.check(owner, stream, observer.seen.events, observer.seen.replies)

