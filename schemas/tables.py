"""SQLAlchemy metadata: the single source of truth for every table.

Names, columns and tenant-first composite keys follow the PSA's schema so the
service can attach to that product's database unchanged.
"""
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

_now = text("now()")
_uuid = text("gen_random_uuid()")


def _tenant() -> Column:
    return Column("tenant", UUID(as_uuid=False), nullable=False)


# A consumer group's place in a partition: the key of the crash guard's tables.
_POSITION_TYPES = {"consumer_group": Text, "topic": Text, "partition": Integer, "offset": BigInteger}
_POSITION = tuple(_POSITION_TYPES)


def _position() -> list[Column]:
    return [Column(name, type_, nullable=False) for name, type_ in _POSITION_TYPES.items()]


def _timestamps() -> list[Column]:
    return [
        Column("created_at", DateTime(timezone=True), server_default=_now),
        Column("updated_at", DateTime(timezone=True), server_default=_now),
    ]


tenants = Table(
    "tenants",
    metadata,
    Column("tenant", UUID(as_uuid=False), primary_key=True, server_default=_uuid),
    Column("client_name", Text, nullable=False),
    *_timestamps(),
)

users = Table(
    "users",
    metadata,
    _tenant(),
    Column("user_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("username", Text, nullable=False),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("email", Text, nullable=False),
    Column("user_type", Text, nullable=False, server_default="internal"),
    Column("is_inactive", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "user_id", "email"),
    UniqueConstraint("tenant", "user_id", name="users_tenant_user_id_unique"),
    CheckConstraint("user_type in ('internal', 'client')", name="users_user_type_check"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
)

roles = Table(
    "roles",
    metadata,
    _tenant(),
    Column("role_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("role_name", Text, nullable=False),
    Column("description", Text),
    Column("msp", Boolean, nullable=False, server_default=text("true")),
    Column("client", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "role_id"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
)

user_roles = Table(
    "user_roles",
    metadata,
    _tenant(),
    Column("user_id", UUID(as_uuid=False), nullable=False),
    Column("role_id", UUID(as_uuid=False), nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=_now),
    PrimaryKeyConstraint("tenant", "user_id", "role_id"),
    ForeignKeyConstraint(["tenant", "user_id"], ["users.tenant", "users.user_id"]),
    ForeignKeyConstraint(["tenant", "role_id"], ["roles.tenant", "roles.role_id"]),
)

permissions = Table(
    "permissions",
    metadata,
    _tenant(),
    Column("permission_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("resource", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("msp", Boolean, nullable=False, server_default=text("true")),
    Column("client", Boolean, nullable=False, server_default=text("false")),
    Column("description", Text),
    Column("created_at", DateTime(timezone=True), server_default=_now),
    PrimaryKeyConstraint("tenant", "permission_id"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
    Index("idx_permissions_tenant_resource_action", "tenant", "resource", "action"),
)

role_permissions = Table(
    "role_permissions",
    metadata,
    _tenant(),
    Column("role_id", UUID(as_uuid=False), nullable=False),
    Column("permission_id", UUID(as_uuid=False), nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=_now),
    PrimaryKeyConstraint("tenant", "role_id", "permission_id"),
    ForeignKeyConstraint(["tenant", "role_id"], ["roles.tenant", "roles.role_id"]),
    ForeignKeyConstraint(
        ["tenant", "permission_id"], ["permissions.tenant", "permissions.permission_id"]
    ),
)

tickets = Table(
    "tickets",
    metadata,
    _tenant(),
    Column("ticket_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("ticket_number", Text, nullable=False),
    Column("title", Text, nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "ticket_id"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
)

project_tasks = Table(
    "project_tasks",
    metadata,
    _tenant(),
    Column("task_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("task_name", Text, nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "task_id"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
)

WORK_ITEM_TYPES = (
    "project_task",
    "ticket",
    "interaction",
    "ad_hoc",
    "appointment_request",
    "opportunity_step",
)

schedule_entries = Table(
    "schedule_entries",
    metadata,
    _tenant(),
    Column("entry_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("title", Text, nullable=False),
    Column("work_item_id", UUID(as_uuid=False)),
    Column("scheduled_start", DateTime(timezone=True)),
    Column("scheduled_end", DateTime(timezone=True)),
    Column("status", Text, nullable=False),
    Column("notes", Text),
    Column("recurrence_pattern", JSONB),
    Column("work_item_type", Text, nullable=False),
    *_timestamps(),
    Column("original_entry_id", UUID(as_uuid=False)),
    Column("is_recurring", Boolean, server_default=text("false")),
    Column("is_private", Boolean, nullable=False, server_default=text("false")),
    PrimaryKeyConstraint("tenant", "entry_id"),
    UniqueConstraint("entry_id", "tenant", name="schedule_entries_entry_id_tenant_unique"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
    ForeignKeyConstraint(
        ["original_entry_id", "tenant"],
        ["schedule_entries.entry_id", "schedule_entries.tenant"],
        ondelete="CASCADE",
    ),
    CheckConstraint(
        "work_item_type in (" + ", ".join(f"'{t}'" for t in WORK_ITEM_TYPES) + ")",
        name="schedule_entries_work_item_type_check",
    ),
    CheckConstraint(
        "work_item_type = 'ad_hoc' or (scheduled_start is not null and scheduled_end is not null)",
        name="schedule_entries_times_required_check",
    ),
    Index(
        "idx_schedule_entries_tenant_dates",
        "tenant",
        "scheduled_start",
        "scheduled_end",
        postgresql_where=text("original_entry_id is null"),
    ),
    Index("idx_schedule_entries_work_item_type", "tenant", "work_item_type", "scheduled_start"),
    Index("idx_schedule_entries_work_item", "tenant", "work_item_id"),
    # Conflict checks and searches expand every recurring master of a tenant.
    Index(
        "idx_schedule_entries_recurring_masters",
        "tenant",
        "entry_id",
        postgresql_where=text("is_recurring and original_entry_id is null"),
    ),
)

schedule_entry_assignees = Table(
    "schedule_entry_assignees",
    metadata,
    _tenant(),
    Column("entry_id", UUID(as_uuid=False), nullable=False),
    Column("user_id", UUID(as_uuid=False), nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "entry_id", "user_id"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"], ondelete="CASCADE"),
    ForeignKeyConstraint(
        ["tenant", "entry_id"],
        ["schedule_entries.tenant", "schedule_entries.entry_id"],
        ondelete="CASCADE",
    ),
    ForeignKeyConstraint(
        ["tenant", "user_id"], ["users.tenant", "users.user_id"], ondelete="CASCADE"
    ),
    Index("idx_schedule_entry_assignees_lookup", "tenant", "user_id", "entry_id"),
)

schedule_conflicts = Table(
    "schedule_conflicts",
    metadata,
    _tenant(),
    Column("conflict_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("entry_id_1", UUID(as_uuid=False), nullable=False),
    Column("entry_id_2", UUID(as_uuid=False), nullable=False),
    Column("conflict_type", Text, nullable=False),
    Column("resolved", Boolean, server_default=text("false")),
    Column("resolution_notes", Text),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "conflict_id"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
    ForeignKeyConstraint(
        ["tenant", "entry_id_1"], ["schedule_entries.tenant", "schedule_entries.entry_id"]
    ),
    ForeignKeyConstraint(
        ["tenant", "entry_id_2"], ["schedule_entries.tenant", "schedule_entries.entry_id"]
    ),
)

audit_logs = Table(
    "audit_logs",
    metadata,
    _tenant(),
    Column("audit_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("user_id", Text),
    Column("operation", Text, nullable=False),
    Column("table_name", Text, nullable=False),
    Column("record_id", Text, nullable=False),
    Column("changed_data", JSONB, nullable=False),
    Column("details", JSONB, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False, server_default=_now),
    PrimaryKeyConstraint("tenant", "audit_id"),
    Index("audit_logs_table_name_record_id_index", "table_name", "record_id"),
    Index("audit_logs_timestamp_index", "timestamp"),
    Index("audit_logs_tenant_index", "tenant"),
)

workflow_definitions = Table(
    "workflow_definitions",
    metadata,
    _tenant(),
    Column("workflow_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("payload_schema_ref", Text, nullable=False, server_default=""),
    Column("draft_definition", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("draft_version", Integer, server_default=text("1")),
    Column("status", Text, server_default="draft"),
    Column("created_by", UUID(as_uuid=False)),
    Column("updated_by", UUID(as_uuid=False)),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "workflow_id"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
)

workflow_definition_versions = Table(
    "workflow_definition_versions",
    metadata,
    _tenant(),
    Column("version_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("workflow_id", UUID(as_uuid=False), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition_json", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("published_by", UUID(as_uuid=False)),
    Column("published_at", DateTime(timezone=True)),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "version_id"),
    UniqueConstraint("tenant", "workflow_id", "version"),
    ForeignKeyConstraint(
        ["tenant", "workflow_id"],
        ["workflow_definitions.tenant", "workflow_definitions.workflow_id"],
    ),
)

workflow_runs = Table(
    "workflow_runs",
    metadata,
    _tenant(),
    Column("run_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("workflow_id", UUID(as_uuid=False), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("status", Text, nullable=False, server_default="running"),
    Column("started_at", DateTime(timezone=True), server_default=_now),
    Column("completed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), server_default=_now),
    PrimaryKeyConstraint("tenant", "run_id"),
    ForeignKeyConstraint(
        ["tenant", "workflow_id"],
        ["workflow_definitions.tenant", "workflow_definitions.workflow_id"],
    ),
)

holidays = Table(
    "holidays",
    metadata,
    _tenant(),
    Column("holiday_id", UUID(as_uuid=False), nullable=False, server_default=_uuid),
    Column("schedule_id", UUID(as_uuid=False)),
    Column("holiday_name", Text, nullable=False),
    Column("holiday_date", Date, nullable=False),
    Column("is_recurring", Boolean, nullable=False, server_default=text("false")),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "holiday_id"),
    ForeignKeyConstraint(["tenant"], ["tenants.tenant"]),
)

# --- the service's own tables (installed alone by `migrate --attach`) ---

command_inbox = Table(
    "command_inbox",
    metadata,
    _tenant(),
    Column("command_id", UUID(as_uuid=False), nullable=False),
    Column("action", Text, nullable=False),
    # sha256 of the command's canonical body: a reused command_id with another
    # body is answered from here but reported as a conflict.
    Column("body_hash", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("result", JSONB, nullable=False),
    Column("source_topic", Text),
    Column("source_partition", Integer),
    Column("source_offset", BigInteger),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=_now),
    # The reply as encoded for the source record, with duplicate = true: a read of that record
    # again (a redelivery, a replay) is answered with these bytes as they are.
    Column("duplicate_reply", LargeBinary),
    PrimaryKeyConstraint("tenant", "command_id"),
)

event_outbox = Table(
    "event_outbox",
    metadata,
    _tenant(),
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("message_key", LargeBinary),
    Column("message_value", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("command_id", UUID(as_uuid=False), nullable=False),
    Column("event_id", UUID(as_uuid=False)),
    Column("event_type", Text),
    Column("appointment_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("published_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("tenant", "id"),
    CheckConstraint("kind in ('event', 'reply')", name="event_outbox_kind_check"),
    Index("idx_event_outbox_unpublished", "id", postgresql_where=text("published_at is null")),
    Index("idx_event_outbox_created_at", "created_at"),
)

# How often a message was started without its batch finishing: counted outside
# the work transaction, so a message that kills the process (OOM, SIGKILL) is
# recognised on the next start. Keyed by position, not tenant: a poison message
# may name no tenant, and the rows live only until their batch commits.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    *_position(),
    Column("attempts", Integer, nullable=False),
    Column("last_started_at", DateTime(timezone=True), nullable=False, server_default=_now),
    PrimaryKeyConstraint(*_POSITION),
)

# A batch's positions as one row, so that claiming and finishing a batch writes one row instead
# of one per message. Keyed by the batch's first position: a position is in one claim at most, as
# a claim that finds any of its positions claimed already records nothing. A claim still there
# at the next start was in flight when a process died: its positions move to delivery_attempts.
delivery_claims = Table(
    "delivery_claims",
    metadata,
    *_position(),
    Column("topics", ARRAY(Text), nullable=False),
    Column("partitions", ARRAY(Integer), nullable=False),
    Column("offsets", ARRAY(BigInteger), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=_now),
    PrimaryKeyConstraint(*_POSITION),
)

SERVICE_TABLES = ("command_inbox", "event_outbox", "delivery_attempts", "delivery_claims")
DOMAIN_TABLES = tuple(t for t in metadata.tables if t not in SERVICE_TABLES)
# Every table with a tenant column gets the tenant isolation policy.
TENANT_TABLES = tuple(name for name, t in metadata.tables.items() if "tenant" in t.c)
