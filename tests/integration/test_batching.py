"""How polled commands become batches: without a linger, what waits is taken at once."""
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import text

from consumer.codecs import Family
from tests.harness import Stack, topic_settings

pytestmark = pytest.mark.integration


def _find(tenant):
    return {
        "tenant_id": tenant.tenant,
        "action": "scheduling.find_entry",
        "actor": {"user_id": tenant.id("dispatcher")},
        "input": {"entry_id": tenant.id("visit")},
    }


def test_commands_waiting_at_start_are_applied_in_few_transactions_without_a_linger(base_settings, owner, tenant):
    settings = topic_settings(replace(base_settings, batch_linger_ms=0), f"b{uuid.uuid4().hex[:10]}", partitions=1)
    stack = Stack(settings, owner, start=False)
    try:
        ids = [stack.send(_find(tenant), Family.JSON) for _ in range(30)]
        stack.start_service()
        assert all(stack.reply(i)["status"] == "OK" for i in ids)
        with owner.connect() as conn:
            transactions = conn.execute(
                text("select count(distinct xmin::text) from command_inbox where command_id = any(cast(:ids as uuid[]))"), {"ids": ids}
            ).scalar()
    finally:
        stack.close()
    # One poll takes the first command and everything already fetched behind it.
    assert transactions < len(ids) / 3
