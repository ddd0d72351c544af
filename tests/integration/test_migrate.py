"""`migrate` and `migrate --attach` against real databases."""
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import inspect, text

from consumer.database import make_engine
from consumer.migrate import migrate

pytestmark = pytest.mark.integration


def test_attach_installs_only_the_service_tables_and_grants_the_runtime_role(postgres, base_settings):
    if postgres is None:
        pytest.skip("needs the embedded server to create a scratch database")
    name = f"psa_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    owner_url = postgres.url(name)
    owner = make_engine(owner_url)
    try:
        with owner.begin() as conn:
            # An existing PSA database: its own tables are already there.
            conn.execute(text("create table tickets (tenant uuid not null, ticket_id uuid not null, primary key (tenant, ticket_id))"))
        settings = replace(base_settings, migration_database_url=owner_url, database_url=postgres.url(name, user="schedule_app"))
        migrate(settings, attach=True)
        migrate(settings, attach=True)  # idempotent
        tables = set(inspect(owner).get_table_names())
        assert {"command_inbox", "event_outbox", "tickets"} <= tables
        assert "schedule_entries" not in tables and "audit_logs" not in tables
        with owner.connect() as conn:
            grants = set(conn.execute(text(
                "select table_name || ':' || privilege_type from information_schema.role_table_grants where grantee = 'schedule_app'"
            )).scalars())  # fmt: skip
            policies = set(conn.execute(text("select tablename from pg_policies")).scalars())
        assert {"tickets:SELECT", "command_inbox:INSERT", "event_outbox:UPDATE"} <= grants
        assert "tickets:INSERT" not in grants
        assert {"command_inbox", "event_outbox"} <= policies
    finally:
        owner.dispose()


def test_full_migration_puts_a_tenant_policy_on_every_tenant_table(owner):
    from schemas.tables import TENANT_TABLES

    with owner.connect() as conn:
        protected = set(conn.execute(text("select tablename from pg_policies where policyname = 'tenant_isolation_policy'")).scalars())
        forced = set(conn.execute(text("select relname from pg_class where relrowsecurity")).scalars())
    assert set(TENANT_TABLES) <= protected and set(TENANT_TABLES) <= forced
