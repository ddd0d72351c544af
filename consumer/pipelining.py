"""psycopg pipeline mode under SQLAlchemy Core: statements nobody reads the result of travel together.

Inside `pipelined(conn)` statements are queued on the connection instead of
waiting for their answer one by one. A statement that returns rows syncs the
pipeline (everything queued before it goes in the same round trip), so
SQLAlchemy, or handlers.statements for the hot statements, reads its result as
usual. Writes, savepoints and tenant settings wait in the queue until the next
sync; `flush(conn)` forces one. The processor lets a command's writes ride
with the next command's first read, and falls back to a flush per command
when a statement fails, so the error is raised inside the savepoint of the
command that caused it.
"""
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, event

from handlers.statements import PIPELINE, raise_as_sqlalchemy

_RETURNS_ROWS = re.compile(r"^\s*(select|with|values|show)\b|\breturning\b", re.IGNORECASE)


def install(engine: Engine) -> None:
    if not event.contains(engine, "after_cursor_execute", _sync_for_rows):
        event.listen(engine, "after_cursor_execute", _sync_for_rows)


def _sync_for_rows(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    pipeline = conn.info.get(PIPELINE)
    if pipeline is not None and _RETURNS_ROWS.search(statement):
        pipeline.sync()


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """Pipeline mode for the block (the engine must have had `install`)."""
    with conn.connection.driver_connection.pipeline() as pipeline:
        conn.info[PIPELINE] = pipeline
        try:
            yield
        finally:
            del conn.info[PIPELINE]


def flush(conn: Connection) -> None:
    """Send what is queued; raise the first error among it as SQLAlchemy would have raised it."""
    pipeline = conn.info.get(PIPELINE)
    if pipeline is None:
        return
    try:
        pipeline.sync()
    except psycopg.Error as e:
        raise_as_sqlalchemy(conn, e)


def discard(conn: Connection) -> None:
    """Before a rollback to savepoint: send what is queued, ignoring its errors, since the rollback
    undoes those writes (and fails in turn if the connection itself broke)."""
    pipeline = conn.info.get(PIPELINE)
    if pipeline is not None:
        try:
            pipeline.sync()
        except psycopg.Error:
            pass


class Savepoint:
    """A command's savepoint, sent straight through the driver: it rides the pipeline like any
    write, and skips the statement machinery SQLAlchemy runs for begin_nested() (a tenth of a
    command's time). A rollback also releases it, so rejected commands do not nest savepoints."""

    NAME = "command"

    def __init__(self, conn: Connection) -> None:
        self._driver = conn.connection.driver_connection
        self._driver.execute(f"SAVEPOINT {self.NAME}")
        self.is_active = True

    def commit(self) -> None:
        self.is_active = False
        self._driver.execute(f"RELEASE SAVEPOINT {self.NAME}")

    def rollback(self) -> None:
        self.is_active = False
        self._driver.execute(f"ROLLBACK TO SAVEPOINT {self.NAME}")
        self._driver.execute(f"RELEASE SAVEPOINT {self.NAME}")
