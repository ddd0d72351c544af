"""Real services for the integration tests: embedded PostgreSQL and a Kafka-protocol broker.

DATABASE_URL + MIGRATION_DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS point the
tests at servers of your own instead.
"""
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone

import psycopg
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine

from consumer import config
from consumer.config import Settings
from consumer.database import make_engine
from consumer.demo import DemoTenant, seed
from consumer.embedded import RUNTIME_ROLE, Broker, Postgres
from consumer.migrate import migrate
from tests.harness import TEST_BROKER_TUNING, Stack, topic_settings

BASE = datetime(2027, 3, 1, tzinfo=timezone.utc)  # a Monday


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres | None]:
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    server = Postgres(tmp_path_factory.mktemp("pg") / "data").start()
    server.create_database("schedule_test")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    server = Broker(log_path=tmp_path_factory.mktemp("broker") / "broker.log").start()
    yield server.bootstrap
    server.stop()


@pytest.fixture(scope="session")
def base_settings(postgres: Postgres | None, broker: str) -> Settings:
    # Many services run in this process: only the tests that scrape one give it a port. Each test
    # registry starts empty, so the service registers what it writes (production registers from CI).
    settings = config.from_env(kafka_bootstrap_servers=broker, metrics_port=0, schema_auto_register=True)
    if postgres is not None:
        settings = replace(
            settings,
            migration_database_url=postgres.url("schedule_test"),
            database_url=postgres.url("schedule_test", user=RUNTIME_ROLE),
        )
    settings = replace(settings, kafka_overrides={**TEST_BROKER_TUNING, **settings.kafka_overrides})
    migrate(settings)
    return settings


@pytest.fixture(scope="session")
def owner(base_settings: Settings) -> Iterator[Engine]:
    """The owner role: seeds and inspects rows without RLS in the way."""
    engine = make_engine(base_settings.owner_database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def private_db(base_settings: Settings, postgres: Postgres | None) -> Iterator[tuple[Settings, Engine]]:
    """A migrated database of the module's own (settings, owner engine): for tests that take it away,
    or whose relay must lead alone."""
    if postgres is None:
        pytest.skip("needs the embedded PostgreSQL: the test creates a database of its own")
    name = f"own_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    settings = replace(base_settings, migration_database_url=postgres.url(name), database_url=postgres.url(name, user=RUNTIME_ROLE))
    migrate(settings)
    engine = make_engine(settings.owner_database_url)
    yield settings, engine
    engine.dispose()
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute(f'drop database "{name}" with (force)')


def new_tenant(owner: Engine) -> DemoTenant:
    with owner.begin() as conn:
        return seed(conn, str(uuid.uuid4()), BASE, name="Test MSP")


@pytest.fixture
def tenant(owner: Engine) -> DemoTenant:
    return new_tenant(owner)


@pytest.fixture(scope="module")
def registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": "mock://tests"})


@pytest.fixture(scope="module")
def stack(base_settings: Settings, owner: Engine, registry: SchemaRegistryClient) -> Iterator[Stack]:
    """One running service per test module, on topics of its own."""
    settings = topic_settings(replace(base_settings, schema_registry_url="mock://tests"), f"t{uuid.uuid4().hex[:10]}")
    running = Stack(settings, owner, registry)
    yield running
    running.close()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run `schedule-consumer ARGS` in-process against a stack's settings: (exit status, stdout, stderr)."""
    from consumer import logs
    from consumer.cli import main

    # The CLI would install its own log handler on the root logger; pytest owns it here.
    monkeypatch.setattr(logs, "configure", lambda **_: None)

    def run(settings: Settings, *args: str) -> tuple[int, str, str]:
        flags = {
            "--kafka-bootstrap-servers": settings.kafka_bootstrap_servers,
            "--database-url": settings.database_url,
            "--commands-topic": settings.commands_topic,
            "--replies-topic": settings.replies_topic,
            "--events-topic": settings.events_topic,
            "--dlq-topic": settings.dlq_topic,
            "--consumer-group": settings.consumer_group,
        }
        capsys.readouterr()
        status = main([*args, *(item for pair in flags.items() for item in pair)])
        out, err = capsys.readouterr()
        return status, out, err

    return run
