"""`schedule-consumer migrate`: Alembic over the table metadata, plus the runtime role."""
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from consumer.config import Settings
from consumer.database import make_engine
from schemas.tables import DOMAIN_TABLES, SERVICE_TABLES

log = logging.getLogger("schedule_consumer.migrate")

MIGRATIONS = Path(__file__).resolve().parent.parent / "schemas" / "migrations"

# What the runtime role may do, table by table; everything else is read-only.
WRITES = {
    "schedule_entries": "insert, update, delete",
    "schedule_entry_assignees": "insert, update, delete",
    "schedule_conflicts": "insert",
    "audit_logs": "insert",
    "command_inbox": "insert",
    "event_outbox": "insert, update, delete",
    "delivery_attempts": "insert, update, delete",
    "delivery_claims": "insert, delete",
}


def alembic_config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def migrate(settings: Settings, attach: bool = False) -> None:
    settings.require("database_url")
    engine = make_engine(settings.owner_database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "service@head" if attach else "heads")
            tables = SERVICE_TABLES + DOMAIN_TABLES
            ensure_runtime_role(conn, settings, tables)
    finally:
        engine.dispose()


def ensure_runtime_role(conn: Connection, settings: Settings, tables: tuple[str, ...]) -> None:
    """Create DATABASE_URL's user when missing and grant it only what the service needs."""
    runtime = make_url(settings.database_url)
    owner = make_url(settings.owner_database_url)
    if not runtime.username or runtime.username == owner.username:
        log.warning("DATABASE_URL uses the owner role: row-level security will not bind the service")
        return
    raw = conn.connection.driver_connection
    role = sql.Identifier(runtime.username)
    exists = conn.exec_driver_sql("select 1 from pg_roles where rolname = %s", (runtime.username,)).first()
    if not exists:
        create = sql.SQL("create role {} login nosuperuser nobypassrls nocreatedb nocreaterole").format(role)
        if runtime.password:
            create = sql.SQL("{} password {}").format(create, sql.Literal(runtime.password))
        raw.execute(create)
        log.info("created runtime role %s", runtime.username)
    raw.execute(sql.SQL("grant usage on schema public to {}").format(role))
    for table in tables:
        if conn.exec_driver_sql("select to_regclass(%s)", (table,)).scalar() is None:
            continue  # attached to a PSA database without this optional table
        privileges = "select" + (f", {WRITES[table]}" if table in WRITES else "")
        raw.execute(sql.SQL(f"grant {privileges} on table {{}} to {{}}").format(sql.Identifier(table), role))
