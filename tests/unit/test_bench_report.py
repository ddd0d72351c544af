"""The benchmark's table: every phase printed, each target judged from the numbers."""
from bench.measure import Latency
from bench.phases import QUICK, BacklogResult, CeilingResult, ReplayResult, WorkloadResult
from bench.report import table


def _lat(p50: float, p99: float) -> Latency:
    return Latency(count=100, p50_ms=p50, p95_ms=(p50 + p99) / 2, p99_ms=p99, max_ms=p99 + 1)


def _workload(rate: float, p99: float) -> WorkloadResult:
    return WorkloadResult(
        commands=1000, throughput=rate, latency_rate=rate / 2, latency=_lat(20, p99), commit_at_half_rate=_lat(15, p99 - 5),
        publish_under_load=_lat(5, 30), publish_at_half_rate=_lat(4, 20), peak_rss_mb=120, statements_per_command=3.5,
        commands_per_transaction=40, outcomes={"OK": 1000}, commands_per_transaction_at_half_rate=3.9,
    )  # fmt: skip


def _results(after_p99: float, without_p99: float) -> dict:
    return {
        "entries": 2000, "encoding": "avro",
        "reschedule": _workload(1000, 80), "mixed": _workload(1600, 90),
        "ceiling": CeilingResult(2500, 62.5, 40, 6, 5.4, 0.4),
        "replay": ReplayResult(5000, 12_000, 130, 0.07, 0.01),
        "backlog": BacklogResult(3000, 900, 190, [_lat(60, 300), _lat(50, after_p99)], [_lat(55, 250), _lat(50, without_p99)], 10),
    }  # fmt: skip


def _verdicts(text: str) -> dict[str, bool]:
    lines = text.split("targets (reported, not asserted):\n")[1].splitlines()
    return {line.split("] ", 1)[1].split(":")[0].split(" >=")[0]: line.startswith("  [met]") for line in lines}


def test_each_target_is_judged_from_its_numbers():
    verdicts = _verdicts(table(QUICK, {}, _results(after_p99=140, without_p99=100)))
    assert verdicts == {
        "reschedule-only": False, "mixed": True, "mixed p99 command -> reply <= 100 ms at half that rate": True,
        "replay of applied commands": True, "peak RSS <= 300 MB through the backlog": True,
        "latency recovers after the backlog": True,
    }  # fmt: skip


def test_recovery_compares_the_last_window_with_the_same_window_without_a_backlog():
    text = table(QUICK, {}, _results(after_p99=160, without_p99=100))
    assert not _verdicts(text)["latency recovers after the backlog"]
    assert "the same windows on a service with no backlog: 55 / 152 / 250 ms, then 50 / 75 / 100 ms" in text


def test_commands_per_transaction_are_shown_for_the_burst_and_for_half_rate():
    line = next(line for line in table(QUICK, {}, _results(after_p99=140, without_p99=100)).splitlines() if line.startswith("commands per transaction"))
    assert line.split()[-6:] == ["40", "/", "3.9", "40", "/", "3.9"]
