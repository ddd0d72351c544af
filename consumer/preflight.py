"""What `run` checks before it consumes: every configuration problem fails at once, in one
line (the CLI exits 2), instead of as a retry loop that never ends."""
import logging

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from consumer.config import ConfigError, Settings
from consumer.database import make_engine, sqlalchemy_url
from consumer.schema_registration import RegistryRefused, registry_client, unregistered
from consumer.topics import ensure_topics
from schemas.tables import DOMAIN_TABLES, SERVICE_TABLES, metadata

log = logging.getLogger("schedule_consumer.preflight")


def check(settings: Settings, create_topics: bool) -> None:
    settings.require("kafka_bootstrap_servers", "database_url")
    check_database(settings)
    ensure_topics(settings, create=create_topics, timeout=settings.startup_timeout_s)
    if settings.schema_registry_url and not settings.schema_auto_register:
        check_registry(settings)


def database_url(settings: Settings) -> URL:
    """DATABASE_URL parsed; the error never repeats the text, which may hold a password."""
    try:
        url = make_url(sqlalchemy_url(settings.database_url))
    except (ArgumentError, ValueError):
        raise ConfigError("DATABASE_URL is not a database URL (expected postgresql://user:password@host:port/database)") from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, not {url.drivername}://")
    return url


def check_database(settings: Settings) -> None:
    url = database_url(settings)
    shown = url.set(drivername="postgresql").render_as_string(hide_password=True)
    bound = settings.startup_timeout_s
    engine = make_engine(settings.database_url, poolclass=NullPool, connect_args={"connect_timeout": max(bound, 1)})
    try:
        # Retry while the server may still be starting (compose, a pod beside its database).
        retrying = Retrying(
            stop=stop_after_delay(bound), wait=wait_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception_type(OperationalError), reraise=True,
        )  # fmt: skip
        try:
            conn = retrying(engine.connect)
        except OperationalError as e:
            reason = str(e.orig).strip().splitlines()[0].removeprefix("connection failed: ")
            raise ConfigError(f"cannot connect to DATABASE_URL {shown} within {bound}s: {reason}") from None
        with conn:
            refuse_privileged_role(conn)
    finally:
        engine.dispose()


def refuse_privileged_role(conn: Connection) -> None:
    """Row-level security does not bind a superuser, a BYPASSRLS role or the tables' owner:
    running as one of them would let a command of one tenant touch another's rows."""
    role, superuser, bypass = conn.execute(text("select rolname, rolsuper, rolbypassrls from pg_roles where rolname = current_user")).one()
    why = "is a superuser" if superuser else "has BYPASSRLS" if bypass else None
    if why is None:
        owned = conn.execute(
            text(
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = current_schema() and c.relname = any(:tables)"
                " and pg_has_role(current_user, c.relowner, 'USAGE') order by c.relname"
            ),
            {"tables": list(SERVICE_TABLES + DOMAIN_TABLES)},
        ).scalars().all()  # fmt: skip
        if owned:
            why = f"owns {', '.join(owned[:3])}{', …' if len(owned) > 3 else ''}"
    if why:
        raise ConfigError(
            f"DATABASE_URL's role {role} {why}: row-level security would not bind it and tenants would not be isolated;"
            " use the runtime role `migrate` creates (MIGRATION_DATABASE_URL is for the owner)"
        )
    missing = [t for t in SERVICE_TABLES if conn.execute(text("select to_regclass(:t)"), {"t": t}).scalar() is None]
    tables = [t for t in SERVICE_TABLES if t not in missing]
    if tables:
        # A release that adds a table or a column to the service's tables finds its migration not run yet.
        columns = conn.execute(
            text("select table_name, column_name from information_schema.columns where table_schema = current_schema() and table_name = any(:t)"),
            {"t": tables},
        )  # fmt: skip
        present = {(table, column) for table, column in columns}
        missing += [f"{t}.{c.name}" for t in tables for c in metadata.tables[t].columns if (t, c.name) not in present]
    if missing:
        raise ConfigError(f"DATABASE_URL's database has no {', '.join(missing)}: run `schedule-consumer migrate` first")


def check_registry(settings: Settings) -> None:
    try:
        missing = unregistered(settings, registry_client(settings))
    except RegistryRefused as e:
        raise ConfigError(f"schema registry refused a lookup: {e}") from None
    if missing:
        raise ConfigError(
            f"schemas not registered under {', '.join(missing)}; auto-registration is off"
            " (run `schedule-consumer schemas register`, or set SCHEMA_AUTO_REGISTER=true)"
        )
