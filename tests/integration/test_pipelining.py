"""A pipelined connection keeps its prepared statements through a rejected command's savepoint rollback."""
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, text

from consumer import pipelining

pytestmark = pytest.mark.integration

INSERT = "insert into pipelined_rows (n, note) values (%s, %s)"


@pytest.fixture
def conn(owner: Engine) -> Iterator[Connection]:
    pipelining.install(owner)
    with owner.connect() as conn:
        conn.execute(text("create temporary table pipelined_rows (n int, note text)"))
        conn.commit()
        pipelining.enter(conn)
        try:
            yield conn
        finally:
            pipelining.leave(conn)
            conn.rollback()
            conn.execute(text("drop table pipelined_rows"))
            conn.commit()


def _prepared(conn: Connection) -> int:
    pipelining.flush(conn)
    return conn.connection.driver_connection.execute("select count(*) from pg_prepared_statements").fetchone()[0]


def _insert(conn: Connection, rows: int, note: str) -> None:
    conn.connection.driver_connection.cursor().executemany(INSERT, [(n, note) for n in range(rows)])


def test_a_savepoint_rollback_leaves_prepared_statements_prepared(conn: Connection) -> None:
    with pipelining.transaction(conn):
        _insert(conn, 5, "before")
        before = _prepared(conn)
        savepoint = pipelining.Savepoint(conn)
        _insert(conn, 1, "undone")
        savepoint.rollback()
        pipelining.flush(conn)  # the rollback's result is read here
        _insert(conn, 1, "after")
        assert before > 0
        assert _prepared(conn) >= before


def test_an_executemany_after_a_savepoint_rollback_keeps_its_statement(conn: Connection) -> None:
    # The rollback's result is read while the long executemany is still sending: the statement
    # must be usable afterwards, in the same transaction and the next.
    with pipelining.transaction(conn):
        _insert(conn, 5, "first")
        savepoint = pipelining.Savepoint(conn)
        savepoint.rollback()
        _insert(conn, 2000, "long")
        _insert(conn, 3, "after")
    with pipelining.transaction(conn):
        _insert(conn, 3, "next transaction")
    assert conn.connection.driver_connection.execute("select count(*) from pipelined_rows").fetchone()[0] == 2011
