"""`schedule-consumer dlq`: read the dead-letter topic and send chosen dead letters back.

A redriven dead letter is its original key and bytes, produced to the command
topic's original partition (so it keeps its place among the commands of its
key), with the `dlq.*` headers stripped, a `redrive.count` header counting how
often it has been sent back and a `redrive.origin` header naming the command
record it all started from. If it fails again it returns to the dead-letter
topic with both, so the dead letters of one command record form a lineage: only
the latest of a lineage is sent, and once its count reaches a limit it is
refused, so a message nobody can fix is not cycled for ever.
"""
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from consumer import ranges
from consumer.acks import Acks
from consumer.avro_values import to_json
from consumer.codecs import Codec, PoisonMessage
from consumer.config import ConfigError, Settings
from consumer.dead_letters import DLQ_PREFIX
from consumer.messages import Incoming
from consumer.relay import producer_config
from consumer.wording import plural

REDRIVE_COUNT = "redrive.count"
REDRIVE_ORIGIN = "redrive.origin"


@dataclass(frozen=True)
class DeadLetterRecord(Incoming):
    """A record of the dead-letter topic, with what its dlq.* and redrive.* headers say."""

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def origin(self) -> tuple[str | None, str | None, str | None]:
        return self.header("dlq.original.topic"), self.header("dlq.original.partition"), self.header("dlq.original.offset")

    @property
    def lineage(self) -> str:
        """The command record this dead letter descends from (`topic:partition:offset`)."""
        if self.header(REDRIVE_ORIGIN):
            return self.header(REDRIVE_ORIGIN)
        # Without the dlq.original.* headers it stands alone.
        return ":".join(self.origin) if None not in self.origin else f"dead letter {self.position}"

    @property
    def redrives(self) -> int:
        try:
            return int(self.header(REDRIVE_COUNT) or 0)
        except ValueError:
            return 0


def read_all(settings: Settings) -> list[DeadLetterRecord]:
    """Every dead letter up to the topic's end as it is now, oldest first."""
    consumer = ranges.reader(settings)
    try:
        topic = settings.dlq_topic
        marks = ranges.watermarks(consumer, topic, ranges.partitions(consumer, topic))
        records = [
            DeadLetterRecord.of(m)
            for m in ranges.read(consumer, topic, {p: (low, high) for p, (low, high) in marks.items()})
        ]
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.header("dlq.failed.at") or "", r.partition, r.offset))


def _command(codec: Codec, record: DeadLetterRecord) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(command_id/action/tenant as far as they can be read, the whole decoded command or None)."""
    try:
        cmd = codec.decode_command(record.value)
    except PoisonMessage as p:
        return {k: p.partial.get(k) for k in ("command_id", "action", "tenant_id")}, None
    except Exception:  # e.g. a Schema Registry that cannot be reached: show the dead letter anyway
        return {"command_id": None, "action": None, "tenant_id": None}, None
    decoded = {
        "family": cmd.family,
        "command_id": cmd.command_id,
        "tenant_id": cmd.tenant_id,
        "action": cmd.action,
        "action_version": cmd.action_version,
        "actor": {"user_id": cmd.actor_user_id, "workflow_run_id": cmd.actor_workflow_run_id},
        "correlation_id": cmd.correlation_id,
        "reply_to": cmd.reply_to,
        "issued_at": cmd.issued_at,
        "input": cmd.input,
    }
    return {"command_id": cmd.command_id, "action": cmd.action, "tenant_id": cmd.tenant_id}, to_json(decoded)


def summary(codec: Codec, record: DeadLetterRecord) -> dict[str, Any]:
    topic, partition, offset = record.origin
    return {
        "position": record.position,
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
        "error_class": record.header("dlq.error.class"),
        "error_message": record.header("dlq.error.message"),
        "failed_at": record.header("dlq.failed.at"),
        "attempts": record.header("dlq.attempts"),
        "original": {"topic": topic, "partition": partition, "offset": offset},
        "redrive_count": record.redrives,
        **_command(codec, record)[0],
    }


def detail(codec: Codec, record: DeadLetterRecord) -> dict[str, Any]:
    """Everything about one dead letter: all headers, the key, the value as text or base64, and the decoded command."""
    shown: dict[str, Any] = {
        "position": record.position,
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
        "headers": [[k, None if v is None else v.decode("utf-8", "replace")] for k, v in record.headers],
    }
    value = record.value or b""
    try:
        shown["value"] = json.loads(value)
    except ValueError:
        try:
            shown["value_text"] = value.decode("utf-8")
        except UnicodeDecodeError:
            shown["value_base64"] = base64.b64encode(value).decode()
    shown["decoded"] = _command(codec, record)[1]
    return shown


def select(records: list[DeadLetterRecord], codec: Codec, refs: list[str], error_class: str | None = None, everything: bool = False) -> list[DeadLetterRecord]:
    """Dead letters by position (`P:O`) or command_id, by error class, or all of them."""
    if not (refs or error_class or everything):
        raise ConfigError("name dead letters (PARTITION:OFFSET or a command_id), or give --error-class or --all")
    chosen, named = [], set()
    for record in records:
        wanted = everything or (error_class is not None and record.header("dlq.error.class") == error_class)
        names = {record.position, _command(codec, record)[0]["command_id"]} if refs else set()
        for ref in names.intersection(refs):
            wanted = True
            named.add(ref)
        if wanted:
            chosen.append(record)
    missing = [ref for ref in refs if ref not in named]
    if missing:
        raise ConfigError(f"no dead letter {', '.join(missing)} (positions are those `dlq list` prints)")
    return chosen


@dataclass
class Redrive:
    dry_run: bool
    topic: str
    max_redrives: int
    # One entry per dead letter considered: its summary plus what happened to it.
    sent: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    # Older dead letters of a lineage whose latest is considered instead.
    superseded: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "topic": self.topic, "max_redrives": self.max_redrives, "sent": self.sent, "refused": self.refused, "superseded": self.superseded}

    def lines(self) -> list[str]:
        verb = "Would redrive" if self.dry_run else "Redrove"
        out = [f"{verb} {plural(len(self.sent), 'dead letter')} to {self.topic}" + (":" if self.sent or self.refused or self.superseded else ".")]
        for s in self.sent:
            to = f"  sent as {s['sent_to']}" if s.get("sent_to") else ""
            out.append(f"  {s['position']}  {s['error_class']}  command {s['command_id'] or '-'}  redrive.count {s['redrive_count'] + 1}{to}")
        for r in self.refused:
            out.append(f"  refused {r['position']}: already redriven {plural(r['redrive_count'], 'time')} (limit {self.max_redrives}; raise it with --max-redrives)")
        for s in self.superseded:
            out.append(f"  skipped {s['position']}: {s['latest']} is the latest dead letter of the same command record")
        return out


def redrive_headers(record: DeadLetterRecord) -> list[tuple[str, bytes]]:
    ours = (REDRIVE_COUNT, REDRIVE_ORIGIN)
    kept = [(k, v or b"") for k, v in record.headers if not k.startswith(DLQ_PREFIX) and k not in ours]
    return kept + [(REDRIVE_COUNT, str(record.redrives + 1).encode()), (REDRIVE_ORIGIN, record.lineage.encode())]


def redrive(
    settings: Settings, codec: Codec, chosen: list[DeadLetterRecord], every: list[DeadLetterRecord],
    max_redrives: int, dry_run: bool = False,
) -> Redrive:  # fmt: skip
    """Produce the chosen dead letters to the command topic (idempotent producer, acks=all) and wait for the broker.

    `every` is the whole dead-letter topic: a chosen dead letter with a later one
    of its lineage there (it failed again after a redrive, or was dead-lettered
    twice) is skipped in favour of that latest one, which is considered once."""
    topic = settings.commands_topic
    report = Redrive(dry_run, topic, max_redrives)
    latest: dict[str, DeadLetterRecord] = {}
    for record in every:  # oldest first
        if record.lineage not in latest or record.redrives >= latest[record.lineage].redrives:
            latest[record.lineage] = record
    to_send: list[tuple[DeadLetterRecord, dict[str, Any]]] = []
    # In the order they first arrived, so commands of one key keep their relative order.
    for record in sorted(chosen, key=_arrival):
        line = summary(codec, record)
        newest = latest.get(record.lineage, record)
        if newest is not record:
            report.superseded.append({**line, "latest": newest.position})
        elif record.redrives >= max_redrives:
            report.refused.append(line)
        else:
            to_send.append((record, line))
            report.sent.append(line)
    if dry_run or not to_send:
        return report
    producer = Producer(producer_config(settings))
    partitions = set(ranges.partitions(producer, topic))
    acks = Acks()
    for record, line in to_send:
        original_topic, original_partition, _ = record.origin

        def delivered(err: Any, msg: Any, line: dict[str, Any] = line) -> None:
            if err is not None:
                acks.failures.append(f"{line['position']}: {err}")
            else:
                line["sent_to"] = f"{msg.partition()}:{msg.offset()}"

        extra: dict[str, Any] = {}
        if original_topic == topic and original_partition is not None and int(original_partition) in partitions:
            extra["partition"] = int(original_partition)
        producer.produce(topic, key=record.key, value=record.value, headers=redrive_headers(record), on_delivery=delivered, **extra)
        producer.poll(0)
    problem = acks.unacknowledged(producer, "redriven dead letters")
    if problem:
        raise RuntimeError(problem)
    return report


def _arrival(record: DeadLetterRecord) -> tuple[str, int, int]:
    topic, partition, offset = record.origin
    try:
        return topic or "", int(partition or -1), int(offset or -1)
    except ValueError:
        return topic or "", -1, -1


def describe_lines(summaries: list[dict[str, Any]]) -> Iterator[str]:
    """`dlq list` as text: two or three lines per dead letter."""
    for s in summaries:
        o = s["original"]
        redriven = f"  redriven {s['redrive_count']}x" if s["redrive_count"] else ""
        yield f"{s['position']:<8} {s['error_class']}  failed {s['failed_at']}  attempts {s['attempts']}  from {o['topic']} {o['partition']}:{o['offset']}{redriven}"
        if s["command_id"] or s["action"]:
            yield f"         command {s['command_id'] or '-'}  action {s['action'] or '-'}  tenant {s['tenant_id'] or '-'}"
        yield f"         {s['error_message']}"
    yield plural(len(summaries), "dead letter")


def detail_lines(shown: dict[str, Any]) -> Iterator[str]:
    """`dlq show` as text."""
    yield f"dead letter {shown['position']}"
    yield f"key: {shown['key']}"
    yield "headers:"
    for k, v in shown["headers"]:
        yield f"  {k}: {v}"
    if "value" in shown:
        yield "value (JSON):"
        yield from ("  " + line for line in json.dumps(shown["value"], indent=2).splitlines())
    elif "value_text" in shown:
        yield f"value (text): {shown['value_text']}"
    else:
        yield f"value (base64): {shown['value_base64']}"
    if shown["decoded"] is None:
        yield "decoded command: none (the value cannot be decoded; see dlq.error.message)"
    else:
        yield "decoded command:"
        yield from ("  " + line for line in json.dumps(shown["decoded"], indent=2).splitlines())
