"""The consumer SIGKILLed mid-batch, again and again, during a stream of 2,000+ commands."""
import pytest
from consumer.embedded import wait_until
from tests.faults import ledger

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(observer, owner, tenants, spawn, fault_settings):
    stream = ledger.build(tenants, units_per_tenant=145)
    total = len(stream.commands)
    assert total >= 2000
    observer.send_many(stream.commands, stream.partition_of)

    process = spawn("consumer-0")
    kills_mid_batch = 0
    for n, share in enumerate((0.1, 0.3, 0.5, 0.7), start=1):
        wait_until(lambda: ledger.applied(owner, stream) >= share * total, 120, f"{share:.0%} of the stream applied")
        process.kill()
        kills_mid_batch += ledger.in_flight(owner, fault_settings.consumer_group) > 0
        process = spawn(f"consumer-{n}")
    wait_until(lambda: ledger.applied(owner, stream) == total, 180, "the whole stream applied")
    observer.quiesce(60)

    assert kills_mid_batch >= 1, "at least one kill landed while a batch was in flight"
    ledger.check(owner, stream, observer.seen.events, observer.seen.replies)
    assert process.terminate() == 0
    assert ledger.in_flight(owner, fault_settings.consumer_group) == 0
