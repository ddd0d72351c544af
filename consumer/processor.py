"""One batch, one transaction: a savepoint per command, inbox and outbox in the same commit."""
import logging
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine

from consumer import inbox, outbox, pipelining
from consumer.avro_values import to_json
from consumer.codecs import Codec, DecodedCommand
from consumer.config import Settings
from consumer.database import is_transient, set_tenant
from consumer.messages import Incoming, Outcome, Result
from handlers import registry
from handlers.errors import DomainError, ValidationError
from handlers.ids import derive_id
from handlers.timeutil import from_millis, iso
from handlers.uow import BatchCache, CommandContext, Event, UnitOfWork

log = logging.getLogger("schedule_consumer.processor")

# An unexpected handler error is retried this many times inside the batch
# before the command is dead-lettered.
HANDLER_ATTEMPTS = 3


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
    def __init__(self, engine: Engine, codec: Codec, settings: Settings) -> None:
        self.engine = engine
        self.codec = codec
        self.settings = settings
        self._conn: Connection | None = None
        pipelining.install(engine)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        return self._conn

    def process(self, batch: list[Incoming]) -> list[Result]:
        """Apply a batch in one transaction. Transient errors propagate; nothing is half-committed."""
        conn = self._connection()
        try:
            with conn.begin(), pipelining.pipelined(conn):
                results = self._apply(conn, batch)
        except Exception:
            # A broken connection must not be reused for the retry.
            if conn.invalidated or conn.closed:
                self.close()
            raise
        return results

    def _apply(self, conn: Connection, batch: list[Incoming]) -> list[Result]:
        cache = BatchCache()
        recorded = inbox.lookup(conn, {(i.command.tenant_id, i.command.command_id) for i in batch})
        inbox_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        outbox_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        done_in_batch: dict[tuple[str, str], inbox.Recorded] = {}
        results = []
        for item in batch:
            cmd = item.command
            key = (cmd.tenant_id, cmd.command_id)
            earlier = recorded.get(key) or done_in_batch.get(key)
            if earlier is not None:
                results.append(self._duplicate(item, earlier))
                continue
            now = cmd.issued_at or from_millis(item.timestamp_ms)
            result, events, outcome, attempts, error = self._run(conn, item, now, cache)
            if outcome == Outcome.FAILED:
                results.append(Result(item, outcome, error=error, attempts=attempts))
                continue
            processed_at = datetime.now(timezone.utc)
            reply = reply_for(cmd, result, False, processed_at)
            inbox_rows[cmd.tenant_id].append(
                {
                    "tenant": cmd.tenant_id,
                    "command_id": cmd.command_id,
                    "action": cmd.action,
                    "body_hash": cmd.body_hash,
                    "status": result["status"],
                    "result": result,
                    "source_topic": item.topic,
                    "source_partition": item.partition,
                    "source_offset": item.offset,
                    "processed_at": processed_at,
                }
            )
            outbox_rows[cmd.tenant_id].extend(self._event_rows(item, events, processed_at))
            outbox_rows[cmd.tenant_id].append(self._reply_row(item, reply))
            done_in_batch[key] = inbox.Recorded(cmd.body_hash, result, processed_at)
            results.append(Result(item, outcome, reply=reply, attempts=attempts))
        # Inserted per tenant at the end: RLS checks each row against the tenant set.
        for tenant in inbox_rows.keys() | outbox_rows.keys():
            set_tenant(conn, tenant)
            inbox.record(conn, inbox_rows.get(tenant, []))
            outbox.add(conn, outbox_rows.get(tenant, []))
        if outbox_rows:
            outbox.notify(conn)
        return results

    def _run(self, conn: Connection, item: Incoming, now: datetime, cache: BatchCache) -> tuple[dict[str, Any] | None, list[Event], str, int, BaseException | None]:
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
            savepoint = pipelining.Savepoint(conn)
            uow = UnitOfWork(conn, ctx, cache)
            try:
                set_tenant(conn, cmd.tenant_id)
                if cmd.input_error is not None:
                    raise ValidationError(str(cmd.input_error), {"path": cmd.input_error.path})
                output = registry.run(uow, action, cmd.input)
                # Writes still queued in the pipeline fail here, inside this command's savepoint.
                pipelining.flush(conn)
                savepoint.commit()
                return {"status": "OK", "output": to_json(output), "error": None}, uow.events, Outcome.APPLIED, attempt, None
            except DomainError as e:
                pipelining.discard(conn)
                savepoint.rollback()
                return _error_result(e), [], Outcome.REJECTED, attempt, None
            except Exception as e:
                pipelining.discard(conn)
                savepoint.rollback()
                if is_transient(e):
                    raise
                last_error = e
                log.warning(
                    "handler failed unexpectedly (attempt %d of %d): %s",
                    attempt, HANDLER_ATTEMPTS, e,
                    extra=log_fields(item), exc_info=attempt == HANDLER_ATTEMPTS,
                )  # fmt: skip
        return None, [], Outcome.FAILED, HANDLER_ATTEMPTS, last_error

    def _duplicate(self, item: Incoming, earlier: inbox.Recorded) -> Result:
        cmd = item.command
        if earlier.body_hash != cmd.body_hash:
            log.warning(
                "command_id reused with a different body: answered from the first command's result",
                extra=log_fields(item),
            )
        reply = reply_for(cmd, earlier.result, True, earlier.processed_at)
        return Result(item, Outcome.DUPLICATE, reply=reply)

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

    def _reply_row(self, item: Incoming, reply: dict[str, Any]) -> dict[str, Any]:
        cmd = item.command
        topic = cmd.reply_to or self.settings.replies_topic
        value, content_type = self.codec.encode_reply(reply, cmd.family, topic)
        headers = [["content-type", content_type], ["command_id", cmd.command_id]]
        traceparent = item.header("traceparent")
        if traceparent:
            headers.append(["traceparent", traceparent])
        return {
            "tenant": cmd.tenant_id,
            "kind": "reply",
            "topic": topic,
            "message_key": cmd.command_id.encode(),
            "message_value": value,
            "headers": headers,
            "command_id": cmd.command_id,
            "event_id": None,
            "event_type": None,
            "appointment_id": None,
        }


def log_fields(item: Incoming) -> dict[str, Any]:
    """The fields every log line about a command carries."""
    cmd = item.command
    fields: dict[str, Any] = {"partition": item.partition, "offset": item.offset}
    if cmd is not None:
        fields.update(command_id=cmd.command_id, tenant_id=cmd.tenant_id, action=cmd.action, correlation_id=cmd.correlation_id)
    return fields
