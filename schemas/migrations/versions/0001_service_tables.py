"""The service's own tables: command inbox and event outbox

Revision ID: 0001_service
Revises:
"""
from alembic import op

from schemas.migrations.rls import disable_tenant_isolation, enable_tenant_isolation
from schemas.tables import metadata

TABLES = ("command_inbox", "event_outbox")

revision = "0001_service"
down_revision = None
branch_labels = ("service",)
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[t] for t in TABLES])
    enable_tenant_isolation("command_inbox")
    # The relay publishes every tenant's rows in commit order, so it alone may
    # read across tenants; it says so with a transaction-local setting.
    enable_tenant_isolation(
        "event_outbox", extra="current_setting('app.outbox_relay', true) = 'on'"
    )


def downgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        disable_tenant_isolation(table)
    metadata.drop_all(bind, tables=[metadata.tables[t] for t in TABLES])
