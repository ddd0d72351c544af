"""psycopg pipeline mode under SQLAlchemy Core: statements nobody reads the result of travel together.

A processor's connection stays in pipeline mode for its whole life (`enter`),
so a transaction costs no round trip of its own to leave and re-enter it: its
COMMIT travels with its last writes. Statements are queued on the connection
instead of waiting for their answer one by one. A statement that returns rows
syncs the pipeline (everything queued before it goes in the same round trip),
so SQLAlchemy, or handlers.statements for the hot statements, reads its result
as usual. Writes, savepoints and tenant settings wait in the queue until the
next sync; `flush(conn)` forces one. The processor lets a command's writes
ride with the next command's first read, and falls back to a flush per
command when a statement fails, so the error is raised inside the savepoint
of the command that caused it.
"""
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, RootTransaction, event
from sqlalchemy.exc import DBAPIError

from handlers.statements import PIPELINE, command, count_write, raise_as_sqlalchemy, writes

_RETURNS_ROWS = re.compile(r"^\s*(select|with|values|show)\b|\breturning\b", re.IGNORECASE)


def install(engine: Engine) -> None:
    if not event.contains(engine, "after_cursor_execute", _sync_for_rows):
        event.listen(engine, "before_cursor_execute", _count_write)
        event.listen(engine, "after_cursor_execute", _sync_for_rows)


def _count_write(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    # Statements run through SQLAlchemy are counted as handlers.statements counts its own.
    if writes(statement):
        count_write(conn)


def _sync_for_rows(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    pipeline = conn.info.get(PIPELINE)
    if pipeline is not None and _RETURNS_ROWS.search(statement):
        pipeline.sync()


_EXIT = "psycopg_pipeline_exit"
BEGIN, COMMIT = "BEGIN", "COMMIT"


def enter(conn: Connection) -> None:
    """Pipeline mode until `leave` (the engine must have had `install`).

    The driver is put in autocommit and `transaction` sends BEGIN itself: in pipeline
    mode psycopg waits for the answer to the BEGIN it issues implicitly, a round trip
    per transaction for nothing. Every statement of such a connection must therefore
    run inside `transaction`, or it commits on its own."""
    driver = conn.connection.driver_connection
    driver.autocommit = True
    stack = ExitStack()
    conn.info[PIPELINE] = stack.enter_context(driver.pipeline())
    conn.info[_EXIT] = stack


def leave(conn: Connection) -> None:
    """Out of pipeline mode, sending what is queued (its errors no longer matter), and out of
    autocommit, as the pool lent the connection."""
    conn.info.pop(PIPELINE, None)
    stack = conn.info.pop(_EXIT, None)
    if stack is None:
        return
    try:
        stack.close()
        conn.connection.driver_connection.autocommit = False
    except psycopg.Error:
        conn.invalidate()


@contextmanager
def transaction(conn: Connection) -> Iterator[None]:
    """`conn.begin()` on a pipelined connection, its BEGIN queued, committed at the end of the block.

    On an error the pipeline is first cleared of its aborted state (SQLAlchemy's
    rollback would otherwise fail on it and hide the error), and the ROLLBACK is
    sent at once: psycopg only queues it, and a transaction left for an error
    raised in Python would hold its row locks until the connection's next round
    trip. After a COMMIT that failed, SQLAlchemy sends no ROLLBACK but keeps its
    transaction until one is asked for, and the server waits in the aborted
    transaction: both are ended here, or the connection refuses every later one."""
    trans = conn.begin()
    try:
        command(conn, BEGIN)
        yield
        trans.commit()
    except BaseException:
        if not (conn.invalidated or conn.closed):
            _end_aborted(conn, trans)
        raise


def restart(conn: Connection) -> None:
    """Inside `transaction`: commit what was sent so far and begin anew, both only queued, so the
    first transaction costs no round trip of its own: its statements and COMMIT travel with the
    second one's first read. SQLAlchemy's transaction spans both; an error in the first surfaces
    at that read."""
    command(conn, COMMIT)
    command(conn, BEGIN)


def commit_then(conn: Connection, statement: str) -> psycopg.Error | None:
    """Inside `transaction`, as its last step: send COMMIT, then `statement` as a transaction of its
    own, and wait for both in one round trip; `transaction` then finds nothing left to commit. A
    failed COMMIT raises as SQLAlchemy would; the statement's error, after a COMMIT that went
    through, is returned instead."""
    committing = conn.connection.driver_connection.cursor()
    try:
        committing.execute(COMMIT)
        command(conn, statement)
        conn.info[PIPELINE].sync()
    except psycopg.Error as e:
        # psycopg attaches a result to its cursor only when it is not an error.
        if committing.statusmessage != COMMIT:
            raise_as_sqlalchemy(conn, e)
        return e
    finally:
        committing.close()
    return None


def _end_aborted(conn: Connection, trans: RootTransaction) -> None:
    discard(conn)  # out of the pipeline's aborted state, or SQLAlchemy's rollback fails on it
    try:
        committing = not trans.is_active
        # Also after a failed COMMIT: SQLAlchemy keeps the transaction until it is rolled back.
        trans.rollback()
        if committing:
            conn.connection.driver_connection.rollback()  # SQLAlchemy sent none; the server's is open
    except (DBAPIError, psycopg.Error):
        return  # a broken connection: the processor replaces it
    discard(conn)  # sends the queued ROLLBACK


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
    """Send what is queued, ignoring its errors: before a rollback to savepoint, which undoes those
    writes (and fails in turn if the connection itself broke), and to send a queued ROLLBACK."""
    pipeline = conn.info.get(PIPELINE)
    if pipeline is not None:
        try:
            pipeline.sync()
        except psycopg.Error:
            pass


_SAVEPOINT, _RELEASE, _ROLLBACK_TO = "SAVEPOINT command", "RELEASE SAVEPOINT command", "ROLLBACK TO SAVEPOINT command"


class Savepoint:
    """A command's savepoint, sent straight through the driver: it rides the pipeline like any
    write, and skips the statement machinery SQLAlchemy runs for begin_nested() (a tenth of a
    command's time). A rollback also releases it, so rejected commands do not nest savepoints."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        command(conn, _SAVEPOINT)
        self.is_active = True

    def commit(self) -> None:
        self.is_active = False
        command(self._conn, _RELEASE)

    def rollback(self) -> None:
        self.is_active = False
        # psycopg reads any result tagged ROLLBACK as the end of the transaction and forgets every
        # prepared statement, queueing a DEALLOCATE ALL. In pipeline mode an executemany running
        # when that result is read prepares its statement again before the DEALLOCATE goes out, and
        # the statement's next use fails ("prepared statement _pg3_N does not exist"). Prepared
        # statements outlive a rollback to a savepoint: sent unprepared, psycopg does not look at
        # its result.
        with unprepared(self._conn):
            command(self._conn, _ROLLBACK_TO)
        command(self._conn, _RELEASE)


@contextmanager
def unprepared(conn: Connection) -> Iterator[None]:
    """Statements sent in the block are neither prepared nor counted by psycopg's statement cache,
    and statements it holds prepared are sent as plain text: nothing in the block can change the
    cache or rely on it."""
    driver = conn.connection.driver_connection
    threshold = driver.prepare_threshold
    driver.prepare_threshold = None
    try:
        yield
    finally:
        driver.prepare_threshold = threshold
