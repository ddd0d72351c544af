"""A batch's claim as one row (crash-loop guard)

Revision ID: 0004_service
Revises: 0003_service
"""
from alembic import op

from schemas.tables import metadata

revision = "0004_service"
down_revision = "0003_service"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.tables["delivery_claims"].create(op.get_bind())


def downgrade() -> None:
    metadata.tables["delivery_claims"].drop(op.get_bind())
