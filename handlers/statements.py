"""Hot statements: SQLAlchemy Core compiled once, run straight on the psycopg connection.

The statement is still written against the table metadata; only its execution
skips SQLAlchemy's per-call machinery (execution context, result metadata,
cursor description, event dispatch), which cost the service about as much CPU
per reschedule as PostgreSQL spends running it. Parameters and rows go through
the type processors SQLAlchemy would apply, and driver errors come out as
SQLAlchemy's exceptions, so callers see no difference.
"""
import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import CompoundSelect, Connection, Insert, Select, Table, bindparam, column, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Compiled, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import UpdateBase

# Where consumer.pipelining keeps a connection's open psycopg pipeline.
PIPELINE = "psycopg_pipeline"
_CURSOR = "statements_cursor"
# The writes sent on a connection so far: a command that failed having sent none has nothing to undo.
_WRITES = "writes_sent"
# psycopg's named placeholder; %(name)b asks for the parameter in binary.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class _Compiled:
    sql: str
    defaults: dict[str, Any]  # the values the statement itself gives its parameters
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]
    row: type | None  # a namedtuple of the selected columns; None when nothing is returned
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    writes: bool


class Statement:
    """A Core statement whose compiled text, bind and result processors are worked out once."""

    def __init__(self, statement: Executable, binary: bool = False) -> None:
        self._statement = statement
        # Parameters sent in binary: an array in text form is quoted and escaped element by element,
        # in Python (a JSON value costs about eight times as much that way).
        self._binary = binary
        self._compiled: dict[Dialect, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = _compile(self._statement, dialect, self._binary)
        return compiled

    def _execute(self, conn: Connection, cursor: psycopg.Cursor, params: Mapping[str, Any] | None, returns_rows: bool) -> _Compiled:
        compiled = self._compile(conn.dialect)
        if returns_rows and compiled.row is None:
            raise TypeError("the statement returns no rows; use run()")
        if compiled.writes:
            count_write(conn)
        try:
            cursor.execute(compiled.sql, _bound(compiled, params or {}))
        except psycopg.Error as e:
            raise_as_sqlalchemy(conn, e)
        return compiled

    def run(self, conn: Connection, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (in pipeline mode it waits in the queue)."""
        self._execute(conn, _cursor(conn), params, returns_rows=False)

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Run it and return its rows (named tuples); in pipeline mode the queue is synced first."""
        cursor = _cursor(conn)
        compiled = self._execute(conn, cursor, params, returns_rows=True)
        try:
            pipeline = conn.info.get(PIPELINE)
            if pipeline is not None:
                pipeline.sync()
            fetched = cursor.fetchall()
        except psycopg.Error as e:
            raise_as_sqlalchemy(conn, e)
        return _rows(compiled, fetched)

    def send(self, conn: Connection, params: Mapping[str, Any] | None = None) -> "Sent":
        """Run it on a cursor of its own and read its rows later. In pipeline mode the first read
        syncs, so statements sent one after another come back in one round trip."""
        _cursor(conn)  # begins the transaction, as for any statement
        cursor = conn.connection.driver_connection.cursor()
        try:
            compiled = self._execute(conn, cursor, params, returns_rows=True)
        except BaseException:
            cursor.close()
            raise
        return Sent(conn, compiled, cursor)

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any | None:
        rows = self.rows(conn, params)
        return rows[0] if rows else None

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]


class Sent:
    """A statement on its way: `rows()` waits for its answer."""

    def __init__(self, conn: Connection, compiled: _Compiled, cursor: psycopg.Cursor) -> None:
        self._conn = conn
        self._compiled = compiled
        self._cursor = cursor

    def rows(self) -> list[Any]:
        try:
            fetched = self._cursor.fetchall()
        except psycopg.Error as e:
            raise_as_sqlalchemy(self._conn, e)
        finally:
            self._cursor.close()
        return _rows(self._compiled, fetched)


def _compile(statement: Executable, dialect: Dialect, binary: bool = False) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    if "POSTCOMPILE" in compiled.string:
        raise ValueError("an expanding IN needs SQLAlchemy's execution: compare with = ANY(array) instead")
    sql = _PLACEHOLDER.sub(r"%(\1)b", compiled.string) if binary else compiled.string
    defaults = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
    binds = []
    for name, bind in compiled.binds.items():
        process = bind.type._cached_bind_processor(dialect)
        if process is not None:
            binds.append((name, process))
    row, results = None, []
    columns = getattr(statement, "selected_columns", None)
    if columns is not None:
        row = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        for i, column in enumerate(columns):
            process = column.type._cached_result_processor(dialect, None)
            if process is not None:
                results.append((i, process))
    return _Compiled(sql, defaults, tuple(binds), row, tuple(results), writes=_may_write(statement, compiled, sql))


def _may_write(statement: Executable, compiled: Compiled, sql: str) -> bool:
    """`writes`, looking into a WITH, which the text alone cannot: a SELECT whose every CTE is a
    SELECT reads only, so a command it rejects has nothing to undo."""
    if isinstance(statement, (Select, CompoundSelect)):
        return any(not cte.element.is_select for cte in (getattr(compiled, "ctes", None) or ()))
    # A textual statement, even one whose columns are declared, is judged by its text.
    return writes(sql)


def writes(sql: str) -> bool:
    """Whether a statement may change data: anything but a plain SELECT (a row lock is not a change,
    so SELECT … FOR UPDATE counts as a read; a WITH may hold an INSERT, so it counts as a write)."""
    return sql.lstrip()[:6].upper() != "SELECT"


def count_write(conn: Connection) -> None:
    conn.info[_WRITES] = conn.info.get(_WRITES, 0) + 1


def writes_sent(conn: Connection) -> int:
    """How many statements that may change data were sent on the connection: compare two readings."""
    return conn.info.get(_WRITES, 0)


def _bound(compiled: _Compiled, params: Mapping[str, Any]) -> Mapping[str, Any]:
    if not compiled.binds and not compiled.defaults:
        return params
    bound = {**compiled.defaults, **params}
    for name, process in compiled.binds:
        if name in bound:
            bound[name] = process(bound[name])
    return bound


def _rows(compiled: _Compiled, fetched: list[tuple[Any, ...]]) -> list[Any]:
    make = compiled.row._make  # type: ignore[union-attr]
    if not compiled.results:
        return [make(r) for r in fetched]
    out = []
    for r in fetched:
        values = list(r)
        for i, process in compiled.results:
            values[i] = process(values[i])
        out.append(make(values))
    return out


def _cursor(conn: Connection) -> psycopg.Cursor:
    # SQLAlchemy would begin its transaction on the first execute; do the same,
    # so conn.commit() still ends what these statements wrote.
    if not conn.in_transaction():
        conn.begin()
    return _shared_cursor(conn)


def _shared_cursor(conn: Connection) -> psycopg.Cursor:
    # One cursor per connection, reused: creating one costs a tenth of a statement.
    driver = conn.connection.driver_connection
    cursor = conn.info.get(_CURSOR)
    if cursor is None or cursor.closed or cursor.connection is not driver:
        cursor = conn.info[_CURSOR] = driver.cursor()
    return cursor


def command(conn: Connection, sql: str) -> None:
    """A statement without parameters whose rows, if any, nobody reads (SAVEPOINT, BEGIN, the relays'
    wake-up), on the connection's shared cursor: `Connection.execute` of the driver makes a cursor for
    every call. Nothing is begun on SQLAlchemy's side; driver errors come out as psycopg raises them.
    Not counted by `writes_sent`: a handler's statements go through `Statement` or SQLAlchemy."""
    _shared_cursor(conn).execute(sql)


def raise_as_sqlalchemy(conn: Connection, error: psycopg.Error) -> None:
    """Raise a driver error as SQLAlchemy would have, invalidating a connection that broke."""
    broken = conn.connection.driver_connection.closed
    if broken:
        conn.invalidate(error)
    raise DBAPIError.instance(None, None, error, psycopg.Error, connection_invalidated=bool(broken)) from error


# A table's rows as `insert_rows` takes them: the table, whether they come one or many, the columns.
_Shape = tuple[Table, bool, tuple[str, ...]]
_INSERTS: dict[tuple[tuple[_Shape, ...], UpdateBase | None], Statement] = {}


@dataclass(frozen=True)
class Write:
    """Another write of the transaction, sent with `insert_together`'s rows as a WITH of their
    statement rather than as a statement of its own. `statement` is built once: it keys the
    statements kept compiled. Its parameters are named apart from the inserts' (which are
    `tenant` and `<table>_<column>`)."""

    name: str
    statement: UpdateBase
    params: Mapping[str, Any]


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Rows of one tenant, given the same columns, written by one statement: each column's values
    bound as one array and unnested, so the statement text is the same however many rows come
    and stays prepared. One execution per row (executemany) cost psycopg and PostgreSQL a
    statement's overhead for every row; a multi-row VALUES (SQLAlchemy's insertmanyvalues) costs
    the service more Python rendering it than PostgreSQL saves. A single row, the usual case in
    short transactions, goes as plain values: psycopg adapts an array at several times the cost of
    its one value."""
    insert_together(conn, [(table, rows)])


def insert_together(conn: Connection, parts: Sequence[tuple[Table, list[dict[str, Any]]]], also: Write | None = None) -> None:
    """`insert_rows` for one tenant's rows of several tables, in one statement: each table's INSERT
    but the last in a WITH of its own, and so is `also`. A short transaction writes its inbox,
    outbox and audit rows this way, with the deletion of its crash guard's claim; as statements
    of their own, their overhead per statement cost more than their rows. With no rows, `also`
    is sent alone."""
    parts = [(table, rows) for table, rows in parts if rows]
    if not parts:
        if also is not None:
            _together((), also).run(conn, also.params)
        return
    if len({table for table, _ in parts}) != len(parts):
        raise ValueError("rows for one table come in more than one part")
    tenant = parts[0][1][0]["tenant"]
    shapes = []
    params: dict[str, Any] = {"tenant": tenant}
    for table, rows in parts:
        if any(row.keys() != rows[0].keys() for row in rows):
            raise ValueError(f"rows for {table.name} give different columns")
        if any(row["tenant"] != tenant for row in rows):
            raise ValueError(f"rows for {table.name} name more than one tenant")
        columns = tuple(k for k in rows[0] if k != "tenant")
        single = len(rows) == 1
        shapes.append((table, single, columns))
        prefix = _prefix(table)
        if single:
            params.update((prefix + k, rows[0][k]) for k in columns)
        else:
            params.update((prefix + k, [row[k] for row in rows]) for k in columns)
    if also is not None:
        if params.keys() & also.params.keys():
            raise ValueError(f"{also.name} names a parameter of the inserts")
        params.update(also.params)
    _together(tuple(shapes), also).run(conn, params)


def _together(shapes: tuple[_Shape, ...], also: Write | None) -> Statement:
    key = (shapes, None if also is None else also.statement)
    statement = _INSERTS.get(key)
    if statement is None:
        statement = _INSERTS[key] = Statement(_insert(shapes, also), binary=True)
    return statement


def _prefix(table: Table) -> str:
    # Tables share column names (command_id): each part's parameters are named for its table.
    return f"{table.name}_"


def _insert(shapes: tuple[_Shape, ...], also: Write | None) -> Executable:
    inserts = [(_values_insert if single else _unnest_insert)(table, columns) for table, single, columns in shapes]
    if not inserts:
        assert also is not None
        return also.statement
    *first, last = inserts
    ctes = [insert.cte(f"{table.name}_rows") for insert, (table, _, _) in zip(first, shapes)]
    if also is not None:
        ctes.append(also.statement.cte(also.name))
    return last.add_cte(*ctes) if ctes else last


def _values_insert(table: Table, columns: tuple[str, ...]) -> Insert:
    tenant = bindparam("tenant", type_=table.c.tenant.type)
    return table.insert().values({"tenant": tenant, **{k: bindparam(_prefix(table) + k, type_=table.c[k].type) for k in columns}})


def _unnest_insert(table: Table, columns: tuple[str, ...]) -> Insert:
    """INSERT … SELECT :tenant, … FROM unnest(:a, :b, …): the rows in the order of the arrays, so
    identity columns number them in that order, as the relay publishes them."""
    # One dimension: a JSON value that is itself a list (outbox headers) stays one element.
    arrays = [bindparam(_prefix(table) + k, type_=ARRAY(table.c[k].type, dimensions=1)) for k in columns]
    unnested = func.unnest(*arrays).table_valued(*[column(k, table.c[k].type) for k in columns]).render_derived()
    rows = select(bindparam("tenant", type_=table.c.tenant.type), *[unnested.c[k] for k in columns])
    return table.insert().from_select(["tenant", *columns], rows)
