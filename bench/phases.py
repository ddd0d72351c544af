"""The benchmark's phases: each starts the real service as a subprocess and measures it from outside."""
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from bench import ceiling, cpu, dbstats, topics
from bench.layout import Layout
from bench.measure import Latency, commit_latency, first_replies, publish_latency, reply_latency, throughput
from bench.stack import DATABASE, Replicas, Servers, ServiceProcess
from bench.workload import Workload
from consumer.codecs import Family
from consumer.embedded import wait_until
from consumer.service import make_codec

log = logging.getLogger("schedule_consumer.bench")


@dataclass(frozen=True)
class Sizes:
    tenants: int = 20
    technicians: int = 50
    entries: int = 100_000
    commands: int = 50_000
    backlog: int = 200_000
    latency_seconds: int = 20
    pgbench_seconds: int = 20
    partitions: int = 6


RECOVERY_WINDOWS = 3

QUICK = Sizes(tenants=4, technicians=10, entries=2_000, commands=1_500, backlog=3_000, latency_seconds=2, pgbench_seconds=2)


class Paced(NamedTuple):
    """A run at a steady rate: command → reply, command → commit and commit → publish latency, the
    cores each process kept busy while the commands came, and the commands per transaction."""

    reply: Latency
    commit: Latency
    publish: Latency
    cores: dict[str, float]
    commands_per_transaction: float


@dataclass
class WorkloadResult:
    commands: int
    throughput: float
    latency_rate: float
    latency: Latency
    # At half rate: the command's timestamp to its transaction's commit, the part before the relay.
    commit_at_half_rate: Latency
    publish_under_load: Latency
    publish_at_half_rate: Latency
    peak_rss_mb: float
    statements_per_command: float
    commands_per_transaction: float
    outcomes: dict[str, int]
    # CPU time per command during the burst, in ms: the service process, and PostgreSQL (all backends).
    service_cpu_ms: float = 0.0
    database_cpu_ms: float = 0.0
    broker_cpu_ms: float = 0.0
    statements_by_kind: dict[str, float] = field(default_factory=dict)
    # Cores kept busy while the commands came at half rate: the service, PostgreSQL, the broker and
    # the benchmark's own producer.
    cores_at_half_rate: dict[str, float] = field(default_factory=dict)
    # What a transaction holds at half rate: the batch is what arrived while the last one was applied.
    commands_per_transaction_at_half_rate: float = 0.0


@dataclass
class CeilingResult:
    commands_per_s: float
    transactions_per_s: float
    commands_per_transaction: int
    connections: int
    statements_per_command: float
    service_ratio: float


@dataclass
class ReplayResult:
    commands: int
    throughput: float
    peak_rss_mb: float
    # CPU per command, in ms, start-up included: the service, and the broker serving it.
    service_cpu_ms: float
    broker_cpu_ms: float


@dataclass
class BacklogResult:
    commands: int
    throughput: float
    peak_rss_mb: float
    # Command -> reply in consecutive windows once drained: how latency recovers.
    latency_after: list[Latency]
    # The same windows on a service that had no backlog, on topics of their own: the embedded
    # broker's work per batch it hands out grows with the batches a topic holds, so window after window
    # gets slower at the same rate with or without a backlog, and recovery is window i against window i.
    latency_without: list[Latency]
    window_seconds: int


class Bench:
    def __init__(self, servers: Servers, sizes: Sizes, work_dir: Path, encoding: str, replicas: int = 1) -> None:
        self.servers = servers
        self.replicas = replicas
        self.sizes = sizes
        self.work_dir = work_dir
        self.settings = replace(servers.settings, consumer_group="bench")
        self.layout = Layout(sizes.tenants, sizes.technicians, sizes.entries)
        self.workload = Workload(self.layout)
        self.codec = make_codec(self.settings)
        self.family = Family.SINGLE_OBJECT if encoding == "avro" else Family.JSON
        self.feed: topics.Feed | None = None
        self.replies: topics.Tail | None = None
        self.events: topics.Tail | None = None
        self.runs = 0
        self.group = self.settings.consumer_group

    # --- plumbing -----------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers

    def close(self) -> None:
        for tail in (self.replies, self.events):
            if tail is not None:
                tail.close()

    def use_topics(self, phase: str, keep_commands: bool = False) -> None:
        """Topics of the phase's own. The embedded broker's work per request grows with the record
        batches a topic holds (measured: at the same 200 records/s, its CPU went from 0.3 to 0.8 of
        a core over 9,000 records, and back to 0.3 on a new topic), so a phase on the topics of the
        phases before it would measure the broker's history, not the service."""
        kinds = ("replies", "events", "dlq") if keep_commands else ("commands", "replies", "events", "dlq")
        names = {f"{kind}_topic": f"bench.{phase}.{kind}" for kind in kinds}
        topics.create_topics(self.bootstrap, list(names.values()), self.sizes.partitions)
        self.settings = s = replace(self.settings, **names)
        if not keep_commands:
            codec, family, topic = self.codec, self.family, s.commands_topic
            self.feed = topics.Feed(self.bootstrap, topic, lambda c: codec.encode_command(c, family, topic))
        self.close()
        self.replies = topics.Tail(self.bootstrap, s.replies_topic, self.sizes.partitions)
        self.events = topics.Tail(self.bootstrap, s.events_topic, self.sizes.partitions)

    def start_service(self, start: topics.Offsets | None) -> Replicas:
        """The service in a consumer group of its own, committed at `start` (None: from the first record).
        A group that earlier members left can keep a new member waiting for its assignment on the
        embedded broker until the old members' rebalance timeout, so no run reuses one."""
        self.runs += 1
        self.group = f"{self.settings.consumer_group}-{self.runs}"
        if start is not None:
            topics.commit(self.bootstrap, self.group, self.settings.commands_topic, {p: start.get(p, 0) for p in range(self.sizes.partitions)})
        settings = replace(self.settings, consumer_group=self.group)
        return Replicas(
            [
                # Each replica serves its metrics and probes on a port of its own, as separate pods would.
                ServiceProcess(replace(settings, metrics_port=settings.metrics_port + n), self.work_dir / f"service-{self.runs}-{n}.log")
                for n in range(self.replicas)
            ]
        )

    def drain(self, service: Replicas, commands: int) -> None:
        """Until the group committed every command and the relay published every outbox row."""
        target = dict(self.feed.ends)
        timeout = 120 + commands / 100
        try:
            topics.wait_consumed(self.bootstrap, self.group, self.settings.commands_topic, target, timeout, service.alive)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}; the service's last log lines:\n{service.last_lines()}") from None
        wait_until(lambda: dbstats.unpublished(self.servers.owner_url) == 0, timeout, "the outbox to be published", interval=0.2)

    def paced(
        self, service: Replicas, mix: tuple[tuple[str, int], ...], rate: float, seconds: float
    ) -> Paced:
        """Commands at a steady rate on a running service, measured."""
        count = max(1, int(rate * seconds))
        encoded = self.feed.encode(self.workload.commands(count, mix))
        clocks, started = self._cpu_clocks(service), time.monotonic()
        sent = self.feed.paced(encoded, rate)
        elapsed = time.monotonic() - started
        busy = [b - a for a, b in zip(clocks, self._cpu_clocks(service))]
        cores = {k: round(v / elapsed, 2) for k, v in zip(("service", "database", "broker", "benchmark"), busy)}
        self.drain(service, count)
        replied = first_replies(self.replies.catch_up(), set(sent))
        committed = dbstats.commit_times(self.servers.owner_url, list(sent))
        return Paced(
            reply_latency(sent, replied), commit_latency(sent, committed), publish_latency(self.events.catch_up(), committed),
            cores, dbstats.commands_per_transaction(self.servers.owner_url, list(sent)),
        )  # fmt: skip

    # --- phases -------------------------------------------------------------

    def warm_up(self, service: Replicas, mix: tuple[tuple[str, int], ...]) -> None:
        """A few commands first, so the measured run starts on a service that has joined its group."""
        self.feed.burst(self.feed.encode(self.workload.commands(2 * self.sizes.tenants, mix)))
        self.drain(service, 0)
        # Read whatever arrived; results are matched by command id, so a straggler does no harm.
        self.replies.catch_up(expect=False)
        self.events.catch_up(expect=False)

    def workload_run(self, name: str, mix: tuple[tuple[str, int], ...]) -> WorkloadResult:
        """A burst for throughput, then half that rate for latency, on the same service."""
        self.use_topics(name)
        n = self.sizes.commands
        encoded = self.feed.encode(self.workload.commands(n, mix))
        ids = [c["command_id"] for c, _ in encoded]
        service = self.start_service(dict(self.feed.ends))
        try:
            self.warm_up(service, mix)
            log.info("%s: %d commands at once", name, n)
            dbstats.reset(self.servers.owner_url)
            clocks = self._cpu_clocks(service)
            started_ms = time.time() * 1000
            self.feed.burst(encoded)
            del encoded
            self.drain(service, n)
            service_cpu, database_cpu, broker_cpu, _ = (b - a for a, b in zip(clocks, self._cpu_clocks(service)))
            statements = dbstats.statements(self.servers.owner_url)
            replied = first_replies(self.replies.catch_up(), set(ids))
            rate = len(replied) / max(0.001, (max(replied.values(), default=started_ms) - started_ms) / 1000)
            committed = dbstats.commit_times(self.servers.owner_url, ids)
            under_load = publish_latency(self.events.catch_up(), committed)
            log.info("%s: %.0f commands/s; now %.0f commands/s for %ds", name, rate, rate / 2, self.sizes.latency_seconds)
            half = self.paced(service, mix, rate / 2, self.sizes.latency_seconds)
        finally:
            peak = service.stop()
        outcomes = dbstats.outcomes(self.servers.owner_url, ids)
        if len(replied) != n:
            raise RuntimeError(f"{name}: {n - len(replied)} of {n} commands got no reply")
        return WorkloadResult(
            commands=n, throughput=rate, latency_rate=rate / 2, latency=half.reply, commit_at_half_rate=half.commit,
            publish_under_load=under_load, publish_at_half_rate=half.publish, peak_rss_mb=peak,
            statements_per_command=statements.total / n, commands_per_transaction=outcomes["commands_per_transaction"],
            outcomes=outcomes["status"], service_cpu_ms=service_cpu * 1000 / n, database_cpu_ms=database_cpu * 1000 / n,
            broker_cpu_ms=broker_cpu * 1000 / n,
            statements_by_kind={k: round(v / n, 2) for k, v in statements.by_kind.most_common()},
            cores_at_half_rate=half.cores, commands_per_transaction_at_half_rate=half.commands_per_transaction,
        )  # fmt: skip

    def _cpu_clocks(self, service: Replicas) -> tuple[float, float, float, float]:
        """CPU seconds so far of the service, PostgreSQL, the broker and this process (its producer
        shares the cores with what it measures)."""
        own = os.times()
        return service.cpu_seconds(), cpu.server_seconds(self.servers.postgres.data_dir), self._broker_cpu(), own.user + own.system

    def _broker_cpu(self) -> float:
        return cpu.process_seconds(self.servers.broker.process.pid)

    def ceiling(self, batch: int, connections: int, service_rate: float) -> CeilingResult:
        log.info("ceiling: pgbench, %d reschedules per transaction, %d connection(s), %ds", batch, connections, self.sizes.pgbench_seconds)
        c = ceiling.measure(
            self.settings, self.layout, self.servers.postgres.socket_dir, DATABASE, self.work_dir,
            batch=batch, connections=connections, seconds=self.sizes.pgbench_seconds,
        )  # fmt: skip
        return CeilingResult(c.commands_per_s, c.transactions_per_s, batch, connections, c.statements_per_command, service_rate / c.commands_per_s)

    def replay(self) -> ReplayResult:
        """A new consumer group reads the mixed run's command topic: every command is an inbox hit."""
        self.use_topics("replay", keep_commands=True)
        n = sum(self.feed.ends.values())
        log.info("replay: %d applied commands from offset 0 in a new group", n)
        broker_started = self._broker_cpu()
        service = self.start_service(None)
        try:
            self.drain(service, n)
            service_cpu, broker_cpu = service.cpu_seconds(), self._broker_cpu() - broker_started
        finally:
            peak = service.stop()
        replies = self.replies.catch_up()
        self.events.catch_up(expect=False)
        return ReplayResult(n, throughput(r.timestamp_ms for r in replies), peak, service_cpu * 1000 / n, broker_cpu * 1000 / n)

    def backlog(self, mix: tuple[tuple[str, int], ...], latency_rate: float) -> BacklogResult:
        """A large backlog at start-up: memory must stay bounded, latency must recover once drained."""
        seconds = max(2, self.sizes.latency_seconds // 2)
        without = self.steady(mix, latency_rate, seconds)
        self.use_topics("backlog")
        n = self.sizes.backlog
        commands = self.workload.commands(n, mix)
        ids = set(c["command_id"] for c in commands)
        start = dict(self.feed.ends)
        self.feed.burst(self.feed.encode(commands))
        del commands
        log.info("backlog: %d commands waiting; starting the service", n)
        service = self.start_service(start)
        try:
            self.drain(service, n)
            replied = first_replies(self.replies.catch_up(), ids)
            self.events.catch_up()
            log.info("backlog: drained; %.0f commands/s in %d windows of %ds", latency_rate, RECOVERY_WINDOWS, seconds)
            # The drain leaves autovacuum work on every table it grew, so one window right after it
            # says little about recovery: consecutive ones show the way back.
            after = self.windows(service, mix, latency_rate, seconds)
        finally:
            peak = service.stop()
        return BacklogResult(n, throughput(replied.values()), peak, after, without, seconds)

    def steady(self, mix: tuple[tuple[str, int], ...], rate: float, seconds: int) -> list[Latency]:
        """The recovery windows on a new service with nothing waiting, on topics of their own."""
        self.use_topics("steady")
        service = self.start_service(dict(self.feed.ends))
        try:
            self.warm_up(service, mix)
            log.info("steady: %.0f commands/s in %d windows of %ds, no backlog", rate, RECOVERY_WINDOWS, seconds)
            return self.windows(service, mix, rate, seconds)
        finally:
            service.stop()

    def windows(self, service: Replicas, mix: tuple[tuple[str, int], ...], rate: float, seconds: int) -> list[Latency]:
        """Command -> reply in consecutive paced windows."""
        return [self.paced(service, mix, rate, seconds).reply for _ in range(RECOVERY_WINDOWS)]


def as_json(results: dict[str, Any]) -> dict[str, Any]:
    return {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in results.items()}
