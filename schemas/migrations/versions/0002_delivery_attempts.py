"""Delivery attempts, counted outside the work transaction (crash-loop guard)

Revision ID: 0002_service
Revises: 0001_service
"""
from alembic import op

from schemas.tables import metadata

revision = "0002_service"
down_revision = "0001_service"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.tables["delivery_attempts"].create(op.get_bind())


def downgrade() -> None:
    metadata.tables["delivery_attempts"].drop(op.get_bind())
