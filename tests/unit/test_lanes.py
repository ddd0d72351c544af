"""How a batch is split into lanes for the partition workers."""
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from consumer.messages import Incoming
from consumer.partition_workers import split
from consumer.processor import position


def batch_of(tenants_by_partition: list[list[int]]) -> list[Incoming]:
    """Items interleaved across partitions, as a poll returns them; each partition in offset order."""
    items = []
    for offset in range(max((len(p) for p in tenants_by_partition), default=0)):
        for partition, tenants in enumerate(tenants_by_partition):
            if offset < len(tenants):
                command = SimpleNamespace(tenant_id=f"t{tenants[offset]}")
                items.append(Incoming("commands", partition, offset, 0, None, None, (), command))
    return items


partitions = st.lists(st.lists(st.integers(0, 7), max_size=30), min_size=1, max_size=6)


@given(partitions, st.integers(1, 8), st.data())
def test_lanes_hold_whole_tenants_in_the_order_read_and_are_as_even_as_the_largest_tenant_allows(tenants_by_partition, workers, data):
    batch = batch_of(tenants_by_partition)
    done = {position(i) for i in data.draw(st.lists(st.sampled_from(batch), unique_by=position))} if batch else set()
    todo = [i for i in batch if position(i) not in done]

    lanes = split(batch, workers, done)

    assert sorted(position(i) for lane in lanes for i in lane) == sorted(position(i) for i in todo)
    tenants = {i.command.tenant_id for i in todo}
    assert len(lanes) == min(workers, len(tenants))
    for tenant in tenants:
        holding = [lane for lane in lanes if any(i.command.tenant_id == tenant for i in lane)]
        assert len(holding) == 1
        assert [i for i in holding[0] if i.command.tenant_id == tenant] == [i for i in todo if i.command.tenant_id == tenant]
    if lanes:
        largest = max(sum(1 for i in todo if i.command.tenant_id == t) for t in tenants)
        assert max(map(len, lanes)) - min(map(len, lanes)) <= largest


def test_one_partition_of_many_tenants_is_spread_over_the_workers():
    batch = batch_of([[0, 1, 2, 3, 0, 1, 2, 3]])
    lanes = split(batch, 4, set())
    assert [[i.command.tenant_id for i in lane] for lane in lanes] == [["t0", "t0"], ["t1", "t1"], ["t2", "t2"], ["t3", "t3"]]
