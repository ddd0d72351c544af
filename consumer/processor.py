"""One batch, one transaction, inbox and outbox in the same commit.

A batch is first applied without savepoints: a command that fails before it has
written anything (most rejections: not found, a conflict, a missing permission)
has nothing to undo. One that fails after writing, or a write that fails, sends
the batch round again, each command in a savepoint of its own.
"""
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from consumer import attempts, inbox, outbox, pipelining, replies
from consumer.avro_values import to_json
from consumer.codecs import Codec, DecodedCommand, RegistryUnavailable
from consumer.config import Settings
from consumer.database import is_transient, set_tenant
from consumer.messages import Incoming, Outcome, Result
from consumer.metrics import Metrics
from handlers import actors, registry
from handlers.errors import DomainError, ValidationError
from handlers.ids import derive_id
from handlers.statements import Write, insert_together, writes_sent
from handlers.timeutil import from_millis, iso
from handlers.uow import BatchCache, CommandContext, Event, UnitOfWork
from schemas.tables import audit_logs, command_inbox, event_outbox

log = logging.getLogger("schedule_consumer.processor")

# An unexpected handler error is retried this many times inside the batch
# before the command is dead-lettered.
HANDLER_ATTEMPTS = 3


class CrashLoop(Exception):
    """The process died with this message in flight too many times."""


class ConnectionLost(Exception):
    """The database connection broke mid-batch: nothing of the batch committed, so retry it."""


class _Unattributed(Exception):
    """A statement failed while other commands' writes shared its round trip: which command caused it is unknown."""


class _Unsettled(Exception):
    """A command failed after sending writes, in a pass with no savepoint to take them back."""


class _Unfinished(Exception):
    """The claim found messages of the batch that an earlier process started and never finished."""

    def __init__(self, recorded: "Recorded", unfinished: dict[attempts.Position, int]) -> None:
        super().__init__(f"{len(unfinished)} messages were in flight when a consumer stopped")
        self.recorded = recorded
        self.unfinished = unfinished


class ConcurrentDelivery(Exception):
    """Another consumer recorded one of the batch's commands first (the partition
    changed hands mid-batch). Retrying the batch answers it from the inbox."""


@dataclass
class _Done:
    """One command's end inside the batch: what to record and publish, or why it failed."""

    outcome: str
    tries: int
    result: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    outbox_rows: list[dict[str, Any]] = field(default_factory=list)
    audit_rows: list[dict[str, Any]] = field(default_factory=list)
    processed_at: datetime | None = None
    error: BaseException | None = None
    # The reply's bytes as a duplicate, kept in the inbox.
    duplicate_reply: bytes | None = None


def position(item: Incoming) -> attempts.Position:
    return (item.topic, item.partition, item.offset)


def inbox_key(item: Incoming) -> tuple[str, str]:
    return (item.command.tenant_id, item.command.command_id)


# The inbox's answers for a batch, by (tenant, command_id).
Recorded = dict[tuple[str, str], inbox.Recorded]


def reply_for(cmd: DecodedCommand, result: dict[str, Any], duplicate: bool, processed_at: Any) -> dict[str, Any]:
    """The reply in JSON form, from a result as the inbox stores it."""
    return {
        "command_id": cmd.command_id,
        "correlation_id": cmd.correlation_id,
        "tenant_id": cmd.tenant_id,
        "action": cmd.action,
        "status": result["status"],
        "output": result["output"],
        "error": result["error"],
        "duplicate": duplicate,
        "processed_at": processed_at if isinstance(processed_at, str) else iso(processed_at),
    }


def _error_result(error: DomainError) -> dict[str, Any]:
    return {"status": "ERROR", "output": None, "error": {"code": error.code, "message": error.message, "details": error.details}}


class Processor:
    def __init__(
        self, engine: Engine, codec: Codec, settings: Settings, metrics: Metrics | None = None, in_flight: attempts.InFlight | None = None
    ) -> None:
        self.engine = engine
        self.codec = codec
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._conn: Connection | None = None
        # Shared by the processors of one process: a retry may land on another one.
        self._in_flight = in_flight or attempts.InFlight()
        pipelining.install(engine)

    def close(self) -> None:
        if self._conn is not None:
            if not (self._conn.closed or self._conn.invalidated):
                pipelining.leave(self._conn)
            self._conn.close()
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self.close()
            self._conn = self.engine.connect()
            pipelining.enter(self._conn)
        return self._conn

    def recorded(self, batch: list[Incoming]) -> Recorded:
        """What the inbox already answers of the batch, read in a short transaction of its own."""
        conn = self._connection()
        with self._guarded(conn):
            with pipelining.transaction(conn):
                asked = inbox.ask(conn, {inbox_key(i) for i in batch})
            # Read after the COMMIT, which the queries travel with: one round trip.
            return asked.answers()

    def process(self, batch: list[Incoming], recorded: Recorded | None = None) -> list[Result]:
        """Apply a batch in one work transaction, after a short one that claims the positions. With
        `recorded` (what the inbox answers) the claim leaves out the answered commands and waits for
        its commit; without, it claims every position and travels with the work transaction's first
        round trip, which reads the inbox. Transient errors propagate; nothing is half-committed."""
        conn = self._connection()
        with self._guarded(conn):
            if recorded is None:
                try:
                    return self._transaction(conn, batch, None, claim=True)
                except _Unfinished as e:
                    recorded, unfinished = e.recorded, e.unfinished
                    self._forget_answered(conn, batch, recorded, unfinished)
            else:
                if all(inbox_key(i) in recorded for i in batch):
                    # All answered from the inbox: no handler runs, so there is nothing to write.
                    return [duplicate(i, recorded[inbox_key(i)]) for i in batch]
                unfinished = self._claim(conn, self._fresh(batch, recorded))
                if not unfinished:
                    return self._transaction(conn, batch, recorded)
            # An earlier process died with some of these in flight: one at a time,
            # so the attempt count singles out the message that kills it.
            log.warning(
                "%d of %d messages were in flight when a consumer stopped; applying them one by one",
                len(unfinished), len(batch), extra={"partition": batch[0].partition, "offset": batch[0].offset},
            )  # fmt: skip
            return [duplicate(i, recorded[inbox_key(i)]) if inbox_key(i) in recorded else self._isolated(conn, i) for i in batch]

    @contextmanager
    def _guarded(self, conn: Connection) -> Iterator[None]:
        try:
            yield
        except Exception as e:
            # A broken connection must not be reused for the retry.
            if conn.invalidated or conn.closed:
                self.close()
                if not isinstance(e, ConcurrentDelivery):
                    raise ConnectionLost(f"{type(e).__name__}: {e}") from e
            raise

    def _claim(self, conn: Connection, fresh: list[attempts.Position]) -> dict[attempts.Position, int]:
        """The crash guard's claim in a transaction of its own (none when there is nothing to claim):
        the earlier unfinished starts it found, or none, and then the positions are this process's."""
        if not fresh:
            return {}
        with pipelining.transaction(conn):
            claim = attempts.claim(conn, self.settings.consumer_group, fresh)
        # Read after the commit, which it travels with.
        unfinished = claim.earlier()
        if not unfinished:
            self._in_flight.claimed(fresh)
        return unfinished

    def _send_claim(self, conn: Connection, batch: list[Incoming]) -> tuple[attempts.Claim, list[attempts.Position]] | None:
        """At the work transaction's start: the claim on the positions not started yet, committed on
        its own, both only sent (see `_checked`)."""
        fresh = [position(i) for i in batch if position(i) not in self._in_flight]
        if not fresh:
            return None
        claim = attempts.claim(conn, self.settings.consumer_group, fresh)
        pipelining.restart(conn)
        return claim, fresh

    def _checked(self, sent: tuple[attempts.Claim, list[attempts.Position]] | None, recorded: Recorded) -> None:
        """The claim's answer, come back with the inbox's. Raises _Unfinished (the work transaction is
        rolled back, having done nothing) when it found earlier starts that never finished."""
        if sent is None:
            return
        claim, fresh = sent
        unfinished = claim.earlier()
        if unfinished:
            raise _Unfinished(recorded, unfinished)
        self._in_flight.claimed(fresh)

    def _ask_ahead(self, conn: Connection, batch: list[Incoming], recorded: Recorded | None, cache: BatchCache) -> tuple[Recorded, str]:
        """The questions a batch starts with, sent together tenant by tenant: the inbox's answers
        (unless `recorded` holds them), read at once, and the actors' permissions, read by the
        commands that need them. One round trip, or none when the inbox was asked before. Also
        returns the tenant left set."""
        by_tenant: dict[str, list[Incoming]] = defaultdict(list)
        for item in batch:
            by_tenant[item.command.tenant_id].append(item)
        asked = []
        # Last to first, so the tenant left set is the one the batch's commands start with.
        for tenant, items in reversed(by_tenant.items()):
            set_tenant(conn, tenant)
            if recorded is None:
                asked.append((tenant, inbox.ask_tenant(conn, tenant, [i.command.command_id for i in items])))
            for item in items:
                cmd = item.command
                if cmd.actor_user_id is not None and cmd.actor_workflow_run_id is None and (recorded is None or inbox_key(item) not in recorded):
                    actors.ask_permissions(conn, cache, tenant, cmd.actor_user_id)
        return (inbox.Asked(asked).answers() if recorded is None else recorded), tenant

    def _forget_answered(self, conn: Connection, batch: list[Incoming], recorded: Recorded, unfinished: dict[attempts.Position, int]) -> None:
        """Unfinished starts of commands the inbox answers are not counted: their rows go, or every
        later delivery of them would be worked one by one."""
        answered = [position(i) for i in batch if inbox_key(i) in recorded and position(i) in unfinished]
        if answered:
            with pipelining.transaction(conn):
                attempts.clear(conn, self.settings.consumer_group, answered)

    def _fresh(self, batch: list[Incoming], recorded: Recorded) -> list[attempts.Position]:
        """Positions the inbox does not answer and this process has not started yet."""
        return [position(i) for i in batch if inbox_key(i) not in recorded and position(i) not in self._in_flight]

    def _isolated(self, conn: Connection, item: Incoming) -> Result:
        with self._in_flight.alone:
            pos = position(item)
            if pos not in self._in_flight:
                started = attempts.bump(conn, self.settings.consumer_group, pos)
                self._in_flight.counted(pos)
                if started > self.settings.poison_after_crashes:
                    with pipelining.transaction(conn):
                        attempts.clear(conn, self.settings.consumer_group, [pos])
                    self._in_flight.forget(pos)
                    error = CrashLoop(f"the consumer stopped {started - 1} times while this message was in flight")
                    return Result(item, Outcome.FAILED, error=error, attempts=started)
            return self._transaction(conn, [item], None)[0]

    def _transaction(self, conn: Connection, items: list[Incoming], recorded: Recorded | None, claim: bool = False) -> list[Result]:
        """`recorded`: the inbox's answers read before the transaction (None: read them in it). A command
        recorded by another consumer since then fails the inbox insert, and the retry answers it.
        `claim`: the positions are claimed at the transaction's start (see `_send_claim`)."""
        try:
            return self._attempt(conn, items, recorded, deferred=True, claim=claim)
        except (_Unattributed, _Unsettled) as e:
            # Rolled back whole; again with each command in a savepoint of its own and its writes settled
            # inside it, so a failure lands on the command that caused it and undoes only that command.
            log.info("applying the batch again command by command: %s", e,
                     extra={"partition": items[0].partition, "offset": items[0].offset})  # fmt: skip
            # Unprepared: a command's failed write aborts what follows it in the pipeline, and psycopg
            # counts a statement as prepared whose first PREPARE was among that, yet never ran; a
            # command retried in this transaction would then fail on it every time.
            # The claim, if any, committed in the first pass: this one reads the inbox itself.
            with pipelining.unprepared(conn):
                return self._attempt(conn, items, recorded, deferred=False, claim=False)

    def _attempt(self, conn: Connection, items: list[Incoming], recorded: Recorded | None, deferred: bool, claim: bool) -> list[Result]:
        """One transaction over the items. Deferred: no savepoints, and a command's writes are not waited
        for, they travel with the next command's first read (a round trip less per command)."""
        positions = [position(i) for i in items]
        started = time.perf_counter()
        claimed = not claim
        try:
            # The queued inbox, outbox and audit writes travel with the COMMIT; their errors surface
            # there, as SQLAlchemy errors.
            with pipelining.transaction(conn):
                cache = BatchCache()
                sent = self._send_claim(conn, items) if claim else None
                recorded, tenant = self._ask_ahead(conn, items, recorded, cache)
                self._checked(sent, recorded)
                claimed = True
                finish = self._in_flight.finishing(positions)
                results = self._apply(conn, items, recorded, deferred, cache, tenant, attempts.dropping_claims(self.settings.consumer_group, finish))
                attempts.finish(conn, self.settings.consumer_group, finish)
                if any(r.outcome in (Outcome.APPLIED, Outcome.REJECTED) for r in results):
                    outbox.commit_and_notify(conn)
            self.metrics.transaction_seconds.observe(time.perf_counter() - started)
        except (DBAPIError, psycopg.Error) as e:
            if isinstance(e, IntegrityError) and getattr(e.orig.diag, "constraint_name", None) == "command_inbox_pkey":
                raise ConcurrentDelivery(str(e.orig)) from e
            # A claim that failed is not the commands' doing: the batch is retried whole.
            if deferred and claimed and not (is_transient(e) or conn.invalidated):
                raise _Unattributed(f"a write failed among the batch's commands: {e}") from e
            raise
        self._in_flight.finished(finish)
        return results

    def _apply(
        self, conn: Connection, batch: list[Incoming], recorded: Recorded, deferred: bool, cache: BatchCache, tenant_set: str, last: Write | None
    ) -> list[Result]:
        """`tenant_set`: the tenant the connection has set. `last`: a write of the transaction sent with
        its last inserts (or alone, when it has none)."""
        inbox_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        outbox_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        audit_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        done_in_batch: dict[tuple[str, str], inbox.Recorded] = {}
        results = []
        # Set outside the commands' savepoints, so a rollback to one keeps it; a lane holds its
        # tenants' commands one tenant after another, so this runs once per tenant, not per command.
        current_tenant = tenant_set
        for item in batch:
            cmd = item.command
            key = inbox_key(item)
            earlier = recorded.get(key) or done_in_batch.get(key)
            if earlier is not None:
                results.append(duplicate(item, earlier))
                continue
            if cmd.tenant_id != current_tenant:
                current_tenant = cmd.tenant_id
                set_tenant(conn, current_tenant)
            now = cmd.issued_at or from_millis(item.timestamp_ms)
            started = time.perf_counter()
            done = self._run(conn, item, now, cache, deferred)
            self.metrics.handled(cmd.action, time.perf_counter() - started, done.tries)
            if done.outcome == Outcome.FAILED:
                results.append(Result(item, done.outcome, error=done.error, attempts=done.tries))
                continue
            inbox_rows[cmd.tenant_id].append(
                {
                    "tenant": cmd.tenant_id,
                    "command_id": cmd.command_id,
                    "action": cmd.action,
                    "body_hash": cmd.body_hash,
                    "status": done.result["status"],
                    "result": done.result,
                    "source_topic": item.topic,
                    "source_partition": item.partition,
                    "source_offset": item.offset,
                    "processed_at": done.processed_at,
                    "duplicate_reply": done.duplicate_reply,
                }
            )
            outbox_rows[cmd.tenant_id].extend(done.outbox_rows)
            audit_rows[cmd.tenant_id].extend(done.audit_rows)
            self.metrics.reply_waiting(item)
            done_in_batch[key] = inbox.Recorded(cmd.body_hash, done.result, done.processed_at, position(item), done.duplicate_reply)
            results.append(Result(item, done.outcome, reply=done.reply, attempts=done.tries))
        # Inserted per tenant at the end, the one set first: RLS checks each row against the tenant set.
        tenants = sorted(inbox_rows.keys() | outbox_rows.keys(), key=lambda t: t != current_tenant)
        for tenant in tenants:
            if tenant != current_tenant:
                current_tenant = tenant
                set_tenant(conn, tenant)
            rows = [(command_inbox, inbox_rows.get(tenant, [])), (event_outbox, outbox_rows.get(tenant, [])), (audit_logs, audit_rows.get(tenant, []))]
            insert_together(conn, rows, last if tenant == tenants[-1] else None)
        if not tenants:
            insert_together(conn, [], last)
        return results

    def _run(self, conn: Connection, item: Incoming, now: datetime, cache: BatchCache, deferred: bool) -> "_Done":
        cmd = item.command
        ctx = CommandContext(
            command_id=cmd.command_id,
            tenant_id=cmd.tenant_id,
            action=cmd.action,
            action_version=cmd.action_version,
            correlation_id=cmd.correlation_id,
            now=now,
            actor_user_id=cmd.actor_user_id,
            actor_workflow_run_id=cmd.actor_workflow_run_id,
        )
        action = registry.ACTIONS[cmd.action]
        last_error: BaseException | None = None
        for attempt in range(1, HANDLER_ATTEMPTS + 1):
            savepoint = None if deferred else pipelining.Savepoint(conn)
            written = writes_sent(conn)
            uow = UnitOfWork(conn, ctx, cache)
            try:
                try:
                    if cmd.input_error is not None:
                        raise ValidationError(str(cmd.input_error), {"path": cmd.input_error.path})
                    output = registry.run(uow, action, cmd.input)
                    if not deferred:
                        # Writes still queued in the pipeline fail here, inside this command's savepoint.
                        pipelining.flush(conn)
                    result, events, outcome = {"status": "OK", "output": to_json(output), "error": None}, uow.events, Outcome.APPLIED
                    audited = uow.audit_rows
                except DomainError as e:
                    _undo(conn, savepoint, written, e, cmd)
                    result, events, outcome = _error_result(e), [], Outcome.REJECTED
                    audited = []
                # Encoded before the savepoint is released: a reply or event that
                # cannot be written takes the command's writes back with it (see _undo).
                processed_at = datetime.now(timezone.utc)
                reply = reply_for(cmd, result, False, processed_at)
                encoded = replies.encode(self.codec, reply, cmd.family, cmd.reply_to or self.settings.replies_topic, item)
                rows = self._event_rows(item, events, processed_at) + [self._reply_row(item, encoded)]
                if savepoint is not None and savepoint.is_active:
                    savepoint.commit()
                return _Done(
                    outcome, attempt, result=result, reply=reply, outbox_rows=rows, audit_rows=audited,
                    processed_at=processed_at, duplicate_reply=encoded.as_duplicate,
                )  # fmt: skip
            except _Unsettled:
                raise
            except Exception as e:
                if is_transient(e) or isinstance(e, RegistryUnavailable) or conn.invalidated:
                    raise  # the batch's transaction is rolled back whole and retried
                if deferred and isinstance(e, (DBAPIError, psycopg.Error)):
                    raise  # maybe an earlier command's write: the batch is applied again, carefully
                _undo(conn, savepoint, written, e, cmd)
                last_error = e
                log.warning(
                    "handler failed unexpectedly (attempt %d of %d): %s",
                    attempt, HANDLER_ATTEMPTS, e,
                    extra=log_fields(item), exc_info=attempt == HANDLER_ATTEMPTS,
                )  # fmt: skip
        return _Done(Outcome.FAILED, HANDLER_ATTEMPTS, error=last_error)

    def _event_rows(self, item: Incoming, events: list[Event], committed_at: datetime) -> list[dict[str, Any]]:
        cmd = item.command
        topic = self.settings.events_topic
        traceparent = item.header("traceparent")
        rows = []
        for ordinal, event in enumerate(events):
            event_id = derive_id(cmd.command_id, "event", ordinal)
            record = {
                "id": event_id,
                "eventType": event.event_type,
                "timestamp": iso(committed_at),
                "causationId": cmd.command_id,
                "correlationId": cmd.correlation_id,
                "payload": event.payload,
            }
            headers = [
                ["event_type", event.event_type],
                ["event_id", event_id],
                ["tenant_id", cmd.tenant_id],
                ["causation_id", cmd.command_id],
                ["content-type", "application/vnd.apache.avro"],
            ]
            if traceparent:
                headers.append(["traceparent", traceparent])
            rows.append(
                {
                    "tenant": cmd.tenant_id,
                    "kind": "event",
                    "topic": topic,
                    "message_key": f"{cmd.tenant_id}:{event.series_id}".encode(),
                    "message_value": self.codec.encode_event(event.event_type, record, topic),
                    "headers": headers,
                    "command_id": cmd.command_id,
                    "event_id": event_id,
                    "event_type": event.event_type,
                    "appointment_id": event.payload.get("appointmentId"),
                }
            )
        return rows

    def _reply_row(self, item: Incoming, encoded: replies.EncodedReply) -> dict[str, Any]:
        cmd = item.command
        return {
            "tenant": cmd.tenant_id,
            "kind": "reply",
            "topic": encoded.topic,
            "message_key": encoded.key,
            "message_value": encoded.value,
            "headers": [list(h) for h in encoded.headers],
            "command_id": cmd.command_id,
            "event_id": None,
            "event_type": None,
            "appointment_id": None,
        }


def needs_body(item: Incoming, recorded: Recorded | None) -> bool:
    """Whether answering the command takes its body: not when the inbox answers it from the very
    record it was applied from (a redelivery or a replay), whose body it already knows. None: the
    inbox was not asked yet, so every body is read."""
    if recorded is None:
        return True
    earlier = recorded.get(inbox_key(item))
    return earlier is None or not earlier.read_from(position(item))


def duplicate(item: Incoming, earlier: inbox.Recorded) -> Result:
    """The inbox's answer to a command it recorded before."""
    cmd = item.command
    same_record = earlier.read_from(position(item))
    reused = not same_record and earlier.body_hash != cmd.body_hash
    if reused:
        log.warning("command_id reused with a different body: answered from the first command's result", extra=log_fields(item))
    reply = reply_for(cmd, earlier.result, True, earlier.processed_at)
    # The same record gets the same reply: the bytes kept, when they were.
    value = earlier.duplicate_reply if same_record else None
    return Result(item, Outcome.DUPLICATE, reply=reply, reused_id=reused, reply_value=value)


def _undo(conn: Connection, savepoint: pipelining.Savepoint | None, written: int, error: BaseException, cmd: DecodedCommand) -> None:
    """Take back what a failed command wrote. With no savepoint (the first pass), there is nothing
    to take back if it sent no write since `written`; if it did, the batch goes round again with
    savepoints. With one, what is queued is the command's own (earlier commands' writes were
    settled before it began), undone by the rollback, so its errors do not matter."""
    if savepoint is None:
        if writes_sent(conn) != written:
            raise _Unsettled(f"{cmd.action} {cmd.command_id} of tenant {cmd.tenant_id} failed after writing: {type(error).__name__}: {error}") from error
        return
    if savepoint.is_active:
        pipelining.discard(conn)
        savepoint.rollback()


def log_fields(item: Incoming) -> dict[str, Any]:
    """The fields every log line about a command carries."""
    cmd = item.command
    fields: dict[str, Any] = {"partition": item.partition, "offset": item.offset}
    if cmd is not None:
        fields.update(command_id=cmd.command_id, tenant_id=cmd.tenant_id, action=cmd.action, correlation_id=cmd.correlation_id)
    return fields
