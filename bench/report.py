"""The benchmark's printed table, and how the results compare with the targets."""
import os
import platform
from typing import Any

from bench.measure import Latency
from bench.phases import BacklogResult, CeilingResult, ReplayResult, Sizes, WorkloadResult

# How much slower than with no backlog the last window after the drain may be and count as recovered.
RECOVERED = 1.5
TARGETS = (
    "reschedule-only >= 50% of the same-run pgbench ceiling",
    "mixed >= 1,500 commands/s",
    "mixed p99 command -> reply <= 100 ms at half that rate",
    "replay of applied commands >= 10,000 commands/s",
    "peak RSS <= 300 MB through the backlog",
    f"latency recovers after the backlog: p99 of the last window <= {RECOVERED:g} x the same window with no backlog",
)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _lat(lat: Latency) -> str:
    return f"{lat.p50_ms:.0f} / {lat.p95_ms:.0f} / {lat.p99_ms:.0f}"


def _cores(result: WorkloadResult) -> str:
    return " / ".join(f"{v:.2f}" for v in result.cores_at_half_rate.values())


def _cpu(result: WorkloadResult) -> str:
    return f"{result.service_cpu_ms:.2f} / {result.database_cpu_ms:.2f} / {result.broker_cpu_ms:.2f}"


def _per_transaction(result: WorkloadResult) -> str:
    return f"{result.commands_per_transaction:.0f} / {result.commands_per_transaction_at_half_rate:.1f}"


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs{' (' + model + ')' if model else ''}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def table(sizes: Sizes, settings: dict[str, Any], r: dict[str, Any]) -> str:
    res: WorkloadResult = r["reschedule"]
    mix: WorkloadResult = r["mixed"]
    ceil: CeilingResult = r["ceiling"]
    replay: ReplayResult = r["replay"]
    backlog: BacklogResult = r["backlog"]
    rows = [
        ("commands", _n(res.commands), _n(mix.commands)),
        ("throughput (commands/s)", _n(res.throughput), _n(mix.throughput)),
        ("  pgbench ceiling, same statements (commands/s)", _n(ceil.commands_per_s), "-"),
        ("  service / ceiling", f"{ceil.service_ratio:.0%}", "-"),
        ("latency run at half that rate (commands/s)", _n(res.latency_rate), _n(mix.latency_rate)),
        ("  command -> reply p50 / p95 / p99 (ms)", _lat(res.latency), _lat(mix.latency)),
        ("  command -> commit p50 / p95 / p99 (ms)", _lat(res.commit_at_half_rate), _lat(mix.commit_at_half_rate)),
        ("  commit -> event publish p99 (ms)", f"{res.publish_at_half_rate.p99_ms:.0f}", f"{mix.publish_at_half_rate.p99_ms:.0f}"),
        ("commit -> event publish p99 at full load (ms)", f"{res.publish_under_load.p99_ms:.0f}", f"{mix.publish_under_load.p99_ms:.0f}"),
        ("database statements per command", f"{res.statements_per_command:.1f}", f"{mix.statements_per_command:.1f}"),
        ("CPU per command in the burst: service / PostgreSQL / broker (ms)", _cpu(res), _cpu(mix)),
        ("cores busy at half rate: service / PostgreSQL / broker / benchmark", _cores(res), _cores(mix)),
        ("commands per transaction: burst / half rate", _per_transaction(res), _per_transaction(mix)),
        ("peak RSS of a service process (MB)", _n(res.peak_rss_mb), _n(mix.peak_rss_mb)),
    ]
    width = max(len(r[0]) for r in rows) + 2
    cols = max(14, *(len(r[1]) + 2 for r in rows), *(len(r[2]) + 2 for r in rows))
    lines = [
        f"schedule-consumer bench: {sizes.tenants} tenants x {sizes.technicians} technicians, {r['entries']:,} entries "
        f"({r['entries'] // 10:,} recurring), {sizes.partitions} partitions, {r['encoding']} commands",
        f"settings: {', '.join(f'{k}={v}' for k, v in settings.items())}",
        f"machine: {machine()}",
        "",
        f"{'':<{width}}{'reschedule':>{cols}}{'mixed':>{cols}}",
    ]
    lines += [f"{name:<{width}}{a:>{cols}}{b:>{cols}}" for name, a, b in rows]
    lines += [
        "",
        f"mixed replies: {', '.join(f'{k} {v:,}' for k, v in mix.outcomes.items())}",
        "statements: counted by pg_stat_statements, which misses the utility statements the processors send in pipeline mode:"
        " each transaction's BEGIN and COMMIT, and a SAVEPOINT and RELEASE per command of a batch applied again command by command",
        f"ceiling: {ceil.commands_per_transaction} reschedules per transaction on {ceil.connections} connection(s), "
        f"{ceil.statements_per_command:.1f} statements per command, {ceil.transactions_per_s:.1f} transactions/s",
        f"replay: {replay.commands:,} applied commands from offset 0 answered from the inbox at {_n(replay.throughput)} commands/s, "
        f"{replay.service_cpu_ms:.3f} ms of service CPU and {replay.broker_cpu_ms:.3f} ms of broker CPU per command, peak RSS {_n(replay.peak_rss_mb)} MB",
        f"backlog: {backlog.commands:,} commands waiting at start-up drained at {_n(backlog.throughput)} commands/s, "
        f"peak RSS {_n(backlog.peak_rss_mb)} MB; afterwards at {_n(mix.latency_rate)} commands/s, "
        f"command -> reply p50 / p95 / p99 in consecutive {backlog.window_seconds} s windows: "
        + ", then ".join(f"{_lat(w)} ms" for w in backlog.latency_after)
        + "; the same windows on a service with no backlog: "
        + ", then ".join(f"{_lat(w)} ms" for w in backlog.latency_without),
        "",
        "targets (reported, not asserted):",
    ]
    met = (
        ceil.service_ratio >= 0.5,
        mix.throughput >= 1500,
        mix.latency.p99_ms <= 100,
        replay.throughput >= 10_000,
        max(res.peak_rss_mb, mix.peak_rss_mb, replay.peak_rss_mb, backlog.peak_rss_mb) <= 300,
        backlog.latency_after[-1].p99_ms <= RECOVERED * backlog.latency_without[-1].p99_ms,
    )
    lines += [f"  [{'met' if ok else 'MISSED'}] {target}" for target, ok in zip(TARGETS, met)]
    return "\n".join(lines)
