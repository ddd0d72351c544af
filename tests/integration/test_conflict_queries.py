"""The conflict check asked about a stored entry answers what it answers asked about the entry's assignees,
and returns the entry as loading it does."""
import uuid
from datetime import timedelta

import pytest

from consumer.database import make_engine, set_tenant
from handlers import conflicts, entries
from handlers.uow import BatchCache, CommandContext, UnitOfWork

pytestmark = pytest.mark.integration


@pytest.fixture
def uow(base_settings, tenant):
    engine = make_engine(base_settings.database_url)
    with engine.connect() as conn:
        set_tenant(conn, tenant.tenant)
        ctx = CommandContext(str(uuid.uuid4()), tenant.tenant, "scheduling.reschedule", 1, None, tenant.at(0, 0), None, None)
        yield UnitOfWork(conn, ctx, BatchCache())
        conn.rollback()
    engine.dispose()


@pytest.mark.parametrize("entry", ["visit", "setup", "standup", "dentist", "nothing"])
def test_asked_by_entry_and_asked_by_its_assignees_give_the_same_overlaps(uow, tenant, entry):
    stored = entries.load_row(uow, tenant.id(entry), for_update=False)
    found_some = False
    for day in range(9):
        for hour, hours in ((8, 1), (9, 1), (9, 2), (10, 4), (14, 3), (15, 1)):
            start, end = tenant.at(day, hour), tenant.at(day, hour) + timedelta(hours=hours)
            loaded, by_entry = conflicts.entry_and_busy(uow, tenant.id(entry), start, end)
            assert loaded == stored
            if stored is None:
                assert by_entry == []
                continue
            assert by_entry == conflicts.busy(uow, stored.assigned_user_ids, start, end, stored.series_id)
            found_some |= bool(by_entry)
    # Every stored entry's assignees are busy somewhere in those nine days (the weekly review at least).
    assert found_some or stored is None
