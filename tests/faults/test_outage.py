"""PostgreSQL stopped for several seconds mid-stream, then started again."""
import time
import uuid
from dataclasses import replace

import pytest

from consumer.demo import seed
from consumer.database import make_engine
from consumer.embedded import RUNTIME_ROLE, Postgres, wait_until
from consumer.migrate import migrate
from tests.conftest import BASE
from tests.faults import ledger
from tests.harness import Stack

pytestmark = [pytest.mark.integration, pytest.mark.faults]

OUTAGE_SECONDS = 6


@pytest.fixture
def private_pg(tmp_path):
    """A server of the test's own, so stopping it harms nobody else."""
    server = Postgres(tmp_path / "pg" / "data").start()
    server.create_database("outage")
    yield server
    server.stop()


@pytest.fixture
def on_private_pg(private_pg, fault_settings):
    """Settings, owner engine and seeded tenants on the private server."""
    settings = replace(
        fault_settings,
        migration_database_url=private_pg.url("outage"),
        database_url=private_pg.url("outage", user=RUNTIME_ROLE),
    )
    migrate(settings)
    owner = make_engine(settings.owner_database_url)
    with owner.begin() as conn:
        tenants = [seed(conn, str(uuid.uuid4()), BASE, name="Outage MSP") for _ in range(6)]
    yield settings, owner, tenants
    owner.dispose()


def test_database_outage_pauses_and_resumes_without_dead_letters(private_pg, on_private_pg, spawn):
    settings, owner, tenants = on_private_pg
    observer = Stack(settings, owner, start=False)
    try:
        stream = ledger.build(tenants, units_per_tenant=60)
        total = len(stream.commands)
        observer.send_many(stream.commands, stream.partition_of)
        process = spawn("consumer", settings)

        wait_until(lambda: ledger.applied(owner, stream) >= 0.2 * total, 120, "a fifth of the stream applied")
        private_pg.halt()
        down_at = time.monotonic()
        wait_until(lambda: "transient failure, retrying" in process.log_path.read_text(), 30, "the consumer to notice the outage")
        wait_until(lambda: time.monotonic() - down_at >= OUTAGE_SECONDS, OUTAGE_SECONDS + 1, "the outage to last")
        assert process.alive, process.log_tail()
        private_pg.resume()

        wait_until(lambda: ledger.applied(owner, stream) == total, 180, "the whole stream applied after the outage")
        observer.quiesce(60)
        ledger.check(owner, stream, observer.seen.events, observer.seen.replies)
        assert observer.seen.dead_letters == [], "an outage never dead-letters healthy commands"
        assert process.alive
        assert ledger.in_flight(owner) == 0
        assert process.terminate() == 0
    finally:
        observer.close()


def test_sigterm_during_an_outage_exits_within_the_bound(private_pg, on_private_pg, spawn):
    """The retry loop gives up on shutdown: the batch in hand is left for redelivery."""
    settings, owner, tenants = on_private_pg
    bound = 10
    observer = Stack(settings, owner, start=False)
    try:
        stream = ledger.build(tenants, units_per_tenant=5)
        process = spawn("consumer", replace(settings, shutdown_timeout_s=bound))
        wait_until(lambda: "partitions assigned" in process.log_path.read_text(), 60, "the consumer to join")
        private_pg.halt()
        observer.send_many(stream.commands, stream.partition_of)
        wait_until(lambda: "transient failure, retrying" in process.log_path.read_text(), 60, "the consumer to retry")
        asked = time.monotonic()
        assert process.terminate(timeout=bound + 5) == 0
        assert time.monotonic() - asked < bound
        assert "stopping with a batch unfinished" in process.log_path.read_text()
    finally:
        private_pg.resume()
        observer.close()
