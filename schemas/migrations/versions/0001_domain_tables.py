"""PSA domain tables (the schedule, RBAC, workflow runs, audit)

Revision ID: 0001_domain
Revises:
"""
from alembic import op

from schemas.migrations.rls import disable_tenant_isolation, enable_tenant_isolation
from schemas.tables import DOMAIN_TABLES, metadata

revision = "0001_domain"
down_revision = None
branch_labels = ("domain",)
depends_on = None

# This first revision creates the tables as the metadata defines them; every
# later change is an explicit revision of its own.


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[t] for t in DOMAIN_TABLES])
    for table in DOMAIN_TABLES:
        enable_tenant_isolation(table)


def downgrade() -> None:
    bind = op.get_bind()
    for table in DOMAIN_TABLES:
        disable_tenant_isolation(table)
    metadata.drop_all(bind, tables=[metadata.tables[t] for t in DOMAIN_TABLES])
