"""Two, then three consumer processes in one group; one of them killed."""
import re

import pytest

from consumer.embedded import wait_until
from tests.faults import ledger

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def applied_by(process) -> int:
    return process.log_path.read_text().count('"outcome": "applied"')


def assigned(process) -> bool:
    """Whether the group gave the process partitions (a fast group may apply a whole stream before a
    late member joins, so each member's share is sent once it has joined)."""
    return re.search(r"partitions assigned: \[\d", process.log_path.read_text()) is not None


def test_consumers_share_the_work_and_survive_a_member_killed(observer, owner, tenants, spawn):
    stream = ledger.build(tenants, units_per_tenant=145)
    total = len(stream.commands)
    half = total // 2
    first, second = spawn("consumer-1"), spawn("consumer-2")
    wait_until(lambda: assigned(first) and assigned(second), 120, "both consumers to be given partitions")
    observer.send_many(stream.commands[:half], stream.partition_of)
    wait_until(lambda: ledger.applied(owner, stream) >= total // 4, 120, "a quarter of the stream applied")
    third = spawn("consumer-3")
    wait_until(lambda: assigned(third), 120, "the third consumer to be given partitions")
    observer.send_many(stream.commands[half:], stream.partition_of)
    wait_until(lambda: applied_by(third) > 0, 120, "the third consumer to take partitions over")
    second.kill()

    wait_until(lambda: ledger.applied(owner, stream) == total, 180, "the whole stream applied")
    observer.quiesce(60)
    ledger.check(owner, stream, observer.seen.events, observer.seen.replies)
    assert applied_by(first) > 0 and applied_by(second) > 0
    for process in (first, third):
        assert process.terminate() == 0
