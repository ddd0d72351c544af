"""The inbox keeps each reply as it is sent again to a duplicate

Revision ID: 0003_service
Revises: 0002_service
"""
from alembic import op

from schemas.tables import command_inbox

revision = "0003_service"
down_revision = "0002_service"
branch_labels = None
depends_on = None

COLUMN = command_inbox.c.duplicate_reply


def upgrade() -> None:
    # 0001 creates the inbox from the current table metadata, so a new database already has it.
    kind = COLUMN.type.compile(dialect=op.get_bind().dialect)
    op.execute(f"alter table {command_inbox.name} add column if not exists {COLUMN.name} {kind}")


def downgrade() -> None:
    op.drop_column(command_inbox.name, COLUMN.name)
