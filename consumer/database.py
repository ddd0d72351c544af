"""Engines and the per-transaction tenant setting."""
from datetime import date, datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.string import TextLoader
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from handlers.statements import Statement
from handlers.timeutil import iso

TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "53300",  # too_many_connections
        # invalid_sql_statement_name: psycopg counts a statement as prepared that the server does
        # not have. Retrying inside the transaction meets it again; the transaction's rollback
        # makes psycopg forget them all, so the batch's retry works.
        "26000",
    }
)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# JSONB values only: PostgreSQL keeps the parsed value, so the text's spelling does not matter.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default, option=_OPTIONS)


def sqlalchemy_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(sqlalchemy_url(url), json_serializer=_dumps, json_deserializer=orjson.loads, **kwargs)
    event.listen(engine, "connect", _on_connect)
    return engine


# Set on every connection of the service (and given to pgbench, measuring the same statements).
SESSION_SETTINGS = {
    # A backend waiting on a lock does not notice that its client died, and would
    # keep the dead batch's locks until the wait ends; this makes it check.
    "client_connection_check_interval": "2000",
    # Prepared statements run a plan made once. Left to choose, PostgreSQL planned the conflict
    # query afresh for every execution (its plans differ by nothing but the values), and the
    # planning cost more CPU than the run: 0.43 against 0.20 ms per check.
    "plan_cache_mode": "force_generic_plan",
    # Instants come back in UTC, as every instant the service handles is: psycopg gives them
    # datetime.timezone.utc, whose arithmetic and comparisons cost a tenth of a ZoneInfo's, and no
    # server's own time zone shows through.
    "TimeZone": "UTC",
}


def _on_connect(dbapi_connection: Any, record: Any) -> None:
    # Every uuid column is mapped as a string (UUID(as_uuid=False)): reading it as text
    # spares building a uuid.UUID per value only to turn it back into a string.
    dbapi_connection.adapters.register_loader("uuid", TextLoader)
    with dbapi_connection.cursor() as cur:
        for name, value in SESSION_SETTINGS.items():
            cur.execute(f"set {name} = {value}")
    dbapi_connection.commit()


def session_options() -> str:
    """SESSION_SETTINGS as libpq's PGOPTIONS, for a client that is not the service's."""
    return " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS.items())


# Nobody reads its row: in pipeline mode it travels with the statements after it.
_SET_TENANT = Statement(text("select set_config('app.current_tenant', :t, true)"))


def set_tenant(conn: Connection, tenant_id: str) -> None:
    """Transaction-local, so RLS binds exactly this transaction (or savepoint)."""
    _SET_TENANT.run(conn, {"t": tenant_id})


def is_transient(error: BaseException) -> bool:
    """Infrastructure trouble that passes: retry, never dead-letter."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(error, psycopg.Error):
        # Raised by the driver itself (statements sent past SQLAlchemy, such as savepoints).
        return isinstance(error, psycopg.OperationalError) or error.sqlstate in TRANSIENT_SQLSTATES
    if isinstance(error, DBAPIError):
        if error.connection_invalidated or isinstance(error, OperationalError):
            return True
        return getattr(error.orig, "sqlstate", None) in TRANSIENT_SQLSTATES
    return False
