"""`run` refuses bad configuration at start, one line each, exit status 2 (real PostgreSQL and broker)."""
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic import command
from sqlalchemy import inspect

from consumer.cli import main
from consumer.config import Settings
from consumer.embedded import RUNTIME_ROLE, free_port
from consumer.migrate import alembic_config, migrate
from schemas.tables import SERVICE_TABLES
from tests.harness import topic_settings

pytestmark = pytest.mark.integration


def run(settings: Settings, capsys: pytest.CaptureFixture[str], *extra: str, **flags: str) -> tuple[int, str]:
    values = {
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
        "database_url": settings.database_url,
        "commands_topic": settings.commands_topic,
        "replies_topic": settings.replies_topic,
        "events_topic": settings.events_topic,
        "dlq_topic": settings.dlq_topic,
        "startup_timeout_s": "2",
        **flags,
    }
    argv = ["run", *extra] + [arg for name, value in values.items() for arg in (f"--{name.replace('_', '-')}", value)]
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return status, err[-1] if err else ""


@pytest.fixture(scope="module")
def topics(base_settings: Settings) -> Settings:
    return topic_settings(base_settings, f"pre{uuid.uuid4().hex[:8]}", partitions=1)


@pytest.fixture
def scratch_role(postgres, base_settings) -> Iterator[tuple[str, psycopg.Connection]]:
    """A login role of the test's own, and a superuser connection to shape it."""
    if postgres is None:
        pytest.skip("needs the embedded server to create roles")
    name = f"pre_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_settings.owner_database_url, autocommit=True) as admin:
        admin.execute(f'create role "{name}" login')
        yield name, admin
        admin.execute(f'drop owned by "{name}"')
        admin.execute(f'drop role "{name}"')


def test_an_unparseable_database_url_fails_without_echoing_it(topics, capsys):
    status, line = run(topics, capsys, database_url="postgresql://app:s3cret@db:notaport/schedule")
    assert status == 2
    assert line == "schedule-consumer run: DATABASE_URL is not a database URL (expected postgresql://user:password@host:port/database)"


def test_a_database_url_of_another_kind_fails(topics, capsys):
    status, line = run(topics, capsys, database_url="mysql://app@db/schedule")
    assert (status, line) == (2, "schedule-consumer run: DATABASE_URL must be a postgresql:// URL, not mysql://")


def test_an_unmigrated_database_is_named(postgres, topics, capsys):
    if postgres is None:
        pytest.skip("needs the embedded server to create a scratch database")
    database = f"empty_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    status, line = run(topics, capsys, database_url=postgres.url(database, user=RUNTIME_ROLE))
    assert status == 2
    assert line == f"schedule-consumer run: DATABASE_URL's database has no {', '.join(SERVICE_TABLES)}: run `schedule-consumer migrate` first"


def test_a_migration_not_run_yet_is_named_by_the_tables_and_columns_it_adds(private_db, topics, capsys):
    settings, owner = private_db
    with owner.begin() as conn:
        command.downgrade(alembic_config(conn), "0002_service")
    status, line = run(topics, capsys, database_url=settings.database_url)
    assert (status, line) == (
        2, "schedule-consumer run: DATABASE_URL's database has no delivery_claims, command_inbox.duplicate_reply: run `schedule-consumer migrate` first"
    )
    migrate(settings)
    with owner.connect() as conn:
        assert "duplicate_reply" in {c["name"] for c in inspect(conn).get_columns("command_inbox")}
        assert inspect(conn).has_table("delivery_claims")


def test_a_database_that_does_not_answer_fails_after_the_bound(topics, capsys):
    url = f"postgresql://app:s3cret@127.0.0.1:{free_port()}/schedule"
    started = time.monotonic()
    status, line = run(topics, capsys, database_url=url, startup_timeout_s="1")
    assert status == 2 and 1 <= time.monotonic() - started < 10
    assert line.startswith(f"schedule-consumer run: cannot connect to DATABASE_URL postgresql://app:***@127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/schedule within 1s:")
    assert "s3cret" not in line


def test_the_owner_superuser_is_refused(topics, capsys):
    status, line = run(topics, capsys, database_url=topics.owner_database_url)
    assert status == 2
    assert "is a superuser: row-level security would not bind it" in line


def test_a_bypassrls_role_is_refused(postgres, topics, scratch_role, capsys):
    name, admin = scratch_role
    admin.execute(f'alter role "{name}" bypassrls')
    status, line = run(topics, capsys, database_url=postgres.url("schedule_test", user=name))
    assert status == 2
    assert f"DATABASE_URL's role {name} has BYPASSRLS" in line


def test_a_role_that_owns_the_tables_is_refused(postgres, topics, scratch_role, capsys):
    name, admin = scratch_role
    database = f"own_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    with psycopg.connect(postgres.url(database), autocommit=True) as conn:
        for table in ("command_inbox", "event_outbox"):
            conn.execute(f"create table {table} (id int)")
            conn.execute(f'alter table {table} owner to "{name}"')
    try:
        status, line = run(topics, capsys, database_url=postgres.url(database, user=name))
    finally:
        with psycopg.connect(postgres.url(database), autocommit=True) as conn:
            conn.execute(f'reassign owned by "{name}" to postgres')
    assert status == 2
    assert f"DATABASE_URL's role {name} owns command_inbox, event_outbox: row-level security would not bind it" in line


def test_missing_topics_without_create_topics_are_named(topics, capsys):
    prefix = f"absent{uuid.uuid4().hex[:8]}"
    status, line = run(topics, capsys, commands_topic=f"{prefix}.commands", dlq_topic=f"{prefix}.dlq")
    assert status == 2
    assert line == f"schedule-consumer run: missing topics: {prefix}.commands, {prefix}.dlq (create them, or pass --create-topics)"


def test_an_unreachable_broker_fails_after_the_bound(topics, capsys):
    started = time.monotonic()
    status, line = run(topics, capsys, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", startup_timeout_s="1")
    assert status == 2 and time.monotonic() - started < 10
    assert line.startswith("schedule-consumer run: broker 127.0.0.1:") and "unreachable within 1s" in line


def test_unregistered_schemas_are_refused_when_auto_registration_is_off(topics, capsys):
    status, line = run(topics, capsys, schema_registry_url="mock://start-up")
    assert status == 2
    assert f"schemas not registered under {topics.commands_topic}-value, {topics.replies_topic}-value" in line
    assert "run `schedule-consumer schemas register`" in line
