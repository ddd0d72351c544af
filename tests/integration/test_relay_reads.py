"""The relay reads unpublished outbox rows through their partial index, whatever the planner's statistics say."""
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from sqlalchemy import Connection, Engine, text

from consumer import outbox, relay
from consumer.database import make_engine
from schemas.tables import event_outbox
from tests.conftest import new_tenant

pytestmark = pytest.mark.integration


def _plan(engine: Engine, settle: Callable[[Connection], None]) -> str:
    pending = relay.PENDING.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.begin() as conn:
        settle(conn)
        # The costs under which the planner, left alone, reads the whole outbox instead.
        conn.execute(text("set local random_page_cost = 40"))
        return "\n".join(row[0] for row in conn.execute(text(f"explain {pending}")))


def test_the_relay_reads_by_index_scan_where_the_planner_would_scan_the_table(private_db):
    settings, owner = private_db
    tenant = new_tenant(owner).tenant
    now = datetime.now(timezone.utc)
    rows = [
        {
            "tenant": tenant, "kind": "reply", "topic": "t", "message_key": b"k", "message_value": b"v" * 200, "headers": [],
            "command_id": str(uuid.uuid4()), "created_at": now, "published_at": None if n < 2500 else now,
        }  # fmt: skip
        for n in range(3000)
    ]
    with owner.begin() as conn:
        conn.execute(event_outbox.insert(), rows)
    with owner.connect() as conn:
        conn.execute(text("analyze event_outbox"))
        conn.commit()
    engine = make_engine(settings.database_url)
    try:
        left_alone = _plan(engine, outbox.across_tenants)
        publishing = _plan(engine, outbox.publishing)
    finally:
        engine.dispose()
    # A bitmap scan never marks the entries of published rows dead, so each read would visit them again.
    assert "Index Scan using idx_event_outbox_unpublished" not in left_alone
    assert "Index Scan using idx_event_outbox_unpublished" in publishing
    assert "Seq Scan" not in publishing and "Bitmap" not in publishing
