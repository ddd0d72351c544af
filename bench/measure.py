"""Numbers from timestamps: throughput, latency percentiles, commit → publish delays."""
import math
from collections.abc import Iterable
from dataclasses import dataclass

from bench.topics import Record


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Latency:
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, values: list[float]) -> "Latency":
        return cls(len(values), percentile(values, 50), percentile(values, 95), percentile(values, 99), max(values, default=0.0))


def first_replies(replies: Iterable[Record], wanted: set[str]) -> dict[str, int]:
    """Each wanted command's first reply timestamp (ms)."""
    out: dict[str, int] = {}
    for r in replies:
        if r.key in wanted and r.key not in out:
            out[r.key] = r.timestamp_ms
    return out


def throughput(timestamps: Iterable[int]) -> float:
    """Commands per second between the first and the last reply."""
    ts = sorted(timestamps)
    if len(ts) < 2 or ts[-1] == ts[0]:
        return 0.0
    return (len(ts) - 1) / ((ts[-1] - ts[0]) / 1000)


def reply_latency(sent: dict[str, int], replied: dict[str, int]) -> Latency:
    return Latency.of([replied[c] - ts for c, ts in sent.items() if c in replied])


def commit_latency(sent: dict[str, int], committed: dict[str, float]) -> Latency:
    """Commit time of each command's transaction minus the command record's timestamp."""
    return Latency.of([committed[c] - ts for c, ts in sent.items() if c in committed])


def publish_latency(events: Iterable[Record], committed: dict[str, float]) -> Latency:
    """Event record timestamp minus the commit time of the command that caused it."""
    return Latency.of([e.timestamp_ms - committed[c] for e in events if (c := e.headers.get("causation_id")) in committed])
