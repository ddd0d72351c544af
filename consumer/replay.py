"""`schedule-consumer replay`: re-read a stretch of the command topic; the inbox makes it safe.

An open-ended replay (`--from-…` only) rewinds the service's consumer group, as
`kafka-consumer-groups --reset-offsets` would: the service itself then re-reads
from there in partition order, with everything it does for a fresh record. A
group's offsets may only move while it has no members, so the service must be
stopped first.

A bounded replay (`--to-…` as well) reads [start, end) here and applies it
through the service's own Processor; replies and events go through the outbox
and the running relay publishes them. The end is clamped to the group's
committed offsets, so this never races the service for a record: what lies
beyond them is the service's to read.
"""
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine

from consumer import inbox, ranges, replies
from consumer.acks import Acks
from consumer.codecs import Codec, PoisonMessage
from consumer.config import ConfigError, Settings
from consumer.database import make_engine
from consumer.messages import Incoming, Outcome, Result
from consumer.processor import Processor, log_fields
from consumer.ranges import Position
from consumer.relay import producer_config
from consumer.service import make_codec
from consumer.wording import plural

log = logging.getLogger("schedule_consumer.replay")

REWIND = "rewind"
APPLY = "apply"
_IDLE_STATES = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)


@dataclass
class PartitionRange:
    partition: int
    # The records [start, end) this replay covers; for a rewind, start is the group's new offset.
    start: int
    end: int
    # The group's committed offset before the replay (None: nothing committed).
    committed: int | None
    note: str | None = None

    @property
    def records(self) -> int:
        return max(0, self.end - self.start)


@dataclass
class Report:
    mode: str
    dry_run: bool
    topic: str
    group: str
    partitions: list[PartitionRange]
    group_activity: str | None = None
    # Per outcome: new / duplicate / undecodable (dry run); applied / rejected / duplicate / failed / undecodable.
    counts: Counter = field(default_factory=Counter)
    undecodable: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dry_run": self.dry_run,
            "topic": self.topic,
            "group": self.group,
            "group_activity": self.group_activity,
            "partitions": [{**asdict(p), "records": p.records} for p in self.partitions],
            "counts": dict(self.counts),
            "undecodable": dict(self.undecodable),
            "failures": self.failures,
        }

    def lines(self) -> list[str]:
        covered = [p for p in self.partitions if p.records]
        total = sum(p.records for p in covered)
        out = ["Dry run: nothing written." if self.dry_run else ""]
        if self.mode == REWIND:
            verb = "would be rewound" if self.dry_run else "rewound"
            out.append(f"Group {self.group} on {self.topic} {verb}:")
            for p in self.partitions:
                out.append(f"  partition {p.partition}: " + (f"{p.committed} -> {p.start}" if p.records else f"not rewound ({p.note})"))
            if self.group_activity:
                out.append(f"The group is active ({self.group_activity}): stop the service before rewinding it.")
        else:
            out.append(f"{'Would replay' if self.dry_run else 'Replayed'} {self.topic} in this process (group {self.group}'s offsets untouched):")
            for p in self.partitions:
                covered_here = f"offsets {p.start}..{p.end - 1} ({plural(p.records, 'record')}{'; ' + p.note if p.note else ''})"
                out.append(f"  partition {p.partition}: " + (covered_here if p.records else f"nothing to replay ({p.note})"))
        out.append(self._summary(total))
        out.extend(f"  failed: partition {f['partition']} offset {f['offset']} command {f['command_id']}: {f['error']}" for f in self.failures)
        return [line for line in out if line]

    def _summary(self, total: int) -> str:
        c = self.counts
        bad = ", ".join(f"{k} {n}" for k, n in sorted(self.undecodable.items()))
        if self.mode == REWIND:
            fate = "dead-lettered again"
            head = f"The service {'would re-read' if self.dry_run else 're-reads'} {plural(total, 'record')} from there"
            if not self.dry_run:
                if not total:
                    return "Nothing rewound."
                return f"{head} when it starts; the inbox answers the ones it already applied as duplicates."
        else:
            fate = "skipped: the service dead-lettered them when it met them"
            head = plural(total, 'record')
        if self.dry_run:
            parts = [f"{c['new']} new (would be run by their handler)", f"{c['duplicate']} answered as duplicates"]
        else:
            parts = [f"{c['applied']} applied", f"{c['rejected']} domain errors recorded", f"{c['duplicate']} answered as duplicates", f"{c['failed']} failed"]
        parts.append(f"{c['undecodable']} undecodable ({fate}{': ' + bad if bad else ''})")
        return f"{head}: " + ", ".join(parts) + "."


def replay(settings: Settings, start: Position, end: Position | None, dry_run: bool = False) -> Report:
    """Plan the replay, then rewind the group or apply the range (or, dry, only survey it)."""
    admin = AdminClient(settings.kafka())
    consumer = ranges.reader(settings)
    try:
        report = _plan(settings, admin, consumer, start, end, dry_run)
        if report.mode == REWIND and not dry_run:
            if report.group_activity:
                raise ConfigError(
                    f"group {report.group} is active ({report.group_activity}): stop the service before rewinding it, "
                    "or give --to-timestamp/--to-offset to replay a bounded range in this process"
                )
            _rewind(admin, report)
            return report
        settings.require("database_url")
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            codec = make_codec(settings)
            records = ranges.read(consumer, report.topic, {p.partition: (p.start, p.end) for p in report.partitions})
            if dry_run:
                _survey(engine, codec, records, report)
            else:
                _apply(settings, engine, codec, records, report)
        finally:
            engine.dispose()
        return report
    finally:
        consumer.close()


def _plan(settings: Settings, admin: AdminClient, consumer: Consumer, start: Position, end: Position | None, dry_run: bool) -> Report:
    topic = settings.commands_topic
    parts = ranges.partitions(consumer, topic)
    marks = ranges.watermarks(consumer, topic, parts)
    starts = ranges.resolve(consumer, topic, start, marks, "--from")
    committed = _committed(admin, settings.consumer_group, topic, parts)
    report = Report(REWIND if end is None else APPLY, dry_run, topic, settings.consumer_group, [], group_activity=_activity(admin, settings.consumer_group))
    if end is None:
        for p, offset in sorted(starts.items()):
            done = committed[p]
            if marks[p][0] == marks[p][1]:
                report.partitions.append(PartitionRange(p, offset, offset, done, "no records"))
            elif done is None:
                report.partitions.append(PartitionRange(p, offset, offset, None, "nothing committed: the service reads from the earliest record anyway"))
            elif offset >= done:
                report.partitions.append(PartitionRange(p, done, done, done, f"already at {done}" if offset == done else f"the group is at {done}, before the start"))
            else:
                report.partitions.append(PartitionRange(p, offset, marks[p][1], done))
        return report
    if end.offsets is not None and None not in end.offsets and set(end.offsets) - set(starts):
        raise ConfigError("--to-offset names a partition the start does not include")
    ends = ranges.resolve(consumer, topic, end, marks, "--to")
    for p, offset in sorted(starts.items()):
        stop = ends.get(p, marks[p][1])
        done = committed[p] if committed[p] is not None else marks[p][0]
        note = None
        if stop > done:
            stop, note = done, f"clamped to {done}, the group's committed offset: the service reads the rest itself"
        rng = PartitionRange(p, offset, max(offset, stop), committed[p], note)
        if not rng.records and note is None:
            rng.note = "no records" if marks[p][0] == marks[p][1] else "the range is empty here"
        report.partitions.append(rng)
    return report


def _committed(admin: AdminClient, group: str, topic: str, parts: list[int]) -> dict[int, int | None]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts])
    answer = admin.list_consumer_group_offsets([request])[group].result(15)
    found = {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in answer.topic_partitions if tp.topic == topic}
    return {p: found.get(p) for p in parts}


def _activity(admin: AdminClient, group: str) -> str | None:
    """How the group is active (state, members), or None when it has no members."""
    description = admin.describe_consumer_groups([group])[group].result(15)
    if description.state in _IDLE_STATES and not description.members:
        return None
    members = ", ".join(f"{m.client_id}@{m.host}" for m in description.members)
    state = description.state.name.lower()
    return f"state {state}" + (f", {len(description.members)} members: {members}" if members else "")


def _rewind(admin: AdminClient, report: Report) -> None:
    moves = [TopicPartition(report.topic, p.partition, p.start) for p in report.partitions if p.records]
    if not moves:
        return
    answer = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(report.group, moves)])[report.group].result(15)
    errors = [f"partition {tp.partition}: {tp.error}" for tp in answer.topic_partitions if tp.error is not None]
    if errors:
        raise RuntimeError(f"rewinding group {report.group} failed: {'; '.join(errors)}")
    log.info("rewound group %s on %s: %s", report.group, report.topic, ", ".join(f"{tp.partition}->{tp.offset}" for tp in moves))


def _batches(records: Iterable[Message], size: int) -> Iterator[list[Message]]:
    batch: list[Message] = []
    for msg in records:
        batch.append(msg)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _decode(codec: Codec, batch: list[Message], report: Report) -> list[Incoming]:
    items = []
    for m in batch:
        try:
            items.append(Incoming.of(m, codec.decode_command(m.value())))
        except PoisonMessage as p:
            report.counts["undecodable"] += 1
            report.undecodable[p.error_class] += 1
    return items


def _survey(engine: Engine, codec: Codec, records: Iterable[Message], report: Report) -> None:
    """What the replay would do, from the inbox alone; the transaction only reads and is rolled back."""
    seen: set[tuple[str, str]] = set()
    with engine.connect() as conn:
        for batch in _batches(records, 500):
            items = _decode(codec, batch, report)
            keys = {(i.command.tenant_id, i.command.command_id) for i in items}
            trans = conn.begin()
            try:
                recorded = inbox.lookup(conn, keys)
            finally:
                trans.rollback()
            for item in items:
                key = (item.command.tenant_id, item.command.command_id)
                report.counts["duplicate" if key in recorded or key in seen else "new"] += 1
                seen.add(key)


def _apply(settings: Settings, engine: Engine, codec: Codec, records: Iterable[Message], report: Report) -> None:
    # The processor keeps per-consumer-group bookkeeping (delivery attempts); this
    # reader is not the service's group and must not leave marks in its name.
    processor = Processor(engine, codec, replace(settings, consumer_group=f"{settings.consumer_group}.replay"))
    producer = Producer(producer_config(settings))
    try:
        for batch in _batches(records, settings.batch_size):
            items = _decode(codec, batch, report)
            results = processor.process(items) if items else []
            for result in results:
                _account(result, report)
            _answer_duplicates(settings, codec, producer, [r for r in results if r.outcome == Outcome.DUPLICATE])
    finally:
        processor.close()


def _account(result: Result, report: Report) -> None:
    report.counts[result.outcome] += 1
    if result.outcome == Outcome.FAILED:
        item = result.incoming
        log.error("replayed command failed after %d attempts: %s", result.attempts, result.error, extra=log_fields(item))
        report.failures.append({"partition": item.partition, "offset": item.offset, "command_id": item.command.command_id, "error": str(result.error)})


def _answer_duplicates(settings: Settings, codec: Codec, producer: Producer, results: list[Result]) -> None:
    """Duplicates are answered from the inbox straight to the reply topic, as the service does."""
    acks = Acks()
    for result in results:
        cmd, item = result.incoming.command, result.incoming
        replies.produce(producer, codec, result.reply, cmd.family, cmd.reply_to or settings.replies_topic, item, acks, log_fields(item), result.reply_value)
    problem = acks.unacknowledged(producer, "duplicate replies")
    if problem:
        raise RuntimeError(problem)
