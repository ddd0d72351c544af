"""`schedule-consumer bench` end to end at toy sizes, so the benchmark cannot rot unnoticed."""
import json
import re
import subprocess
import sys

import pytest

from consumer.outbox import WAKE_UP

pytestmark = pytest.mark.integration

TINY = [
    "--tenants", "2", "--technicians", "4", "--entries", "100", "--commands", "120", "--backlog", "150",
    "--latency-seconds", "1", "--pgbench-seconds", "1", "--partitions", "2",
]  # fmt: skip


def test_bench_runs_every_phase_and_reports_every_number(tmp_path):
    bench = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "bench", "--json", "--data-dir", str(tmp_path / "bench"), *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = bench.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the benchmark stops its servers on the way out
        stdout, stderr = bench.communicate(timeout=60)
    assert bench.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    for name in ("reschedule", "mixed"):
        r = out[name]
        assert r["commands"] == 120 and r["throughput"] > 0
        assert 0 < r["latency"]["p50_ms"] <= r["latency"]["p99_ms"]
        assert r["latency"]["count"] > 0 and r["publish_at_half_rate"]["count"] > 0
        # Each command commits before its reply is published, so every percentile comes first too.
        assert r["commit_at_half_rate"]["count"] == r["latency"]["count"]
        assert 0 < r["commit_at_half_rate"]["p99_ms"] <= r["latency"]["p99_ms"]
        assert r["statements_per_command"] > 1 and r["peak_rss_mb"] > 10
        assert sum(r["outcomes"].values()) == 120
        assert r["service_cpu_ms"] > 0 and r["database_cpu_ms"] > 0 and r["broker_cpu_ms"] > 0
        assert set(r["cores_at_half_rate"]) == {"service", "database", "broker", "benchmark"}
        assert r["cores_at_half_rate"]["service"] > 0 and r["cores_at_half_rate"]["database"] > 0
        assert r["commands_per_transaction_at_half_rate"] >= 1
    assert out["reschedule"]["outcomes"] == {"OK": 120}
    assert out["ceiling"]["commands_per_s"] > 0 and out["ceiling"]["service_ratio"] > 0
    # The recording saw every statement of a reschedule: its entry with its conflicts, its update;
    # and, once per tenant and transaction, its inbox, outbox and audit rows.
    assert out["ceiling"]["statements_per_command"] > 2
    script = (tmp_path / "bench" / "ceiling.sql").read_text().splitlines()
    # Each command of the recorded batch draws its own entry and window.
    assert sum(line.startswith("\\set u ") for line in script) == out["ceiling"]["commands_per_transaction"]
    # Transactions as the service runs them: the claim, committed on its own, then the inbox lookup
    # and the work, then the relays' wake-up.
    shape = [line for line in script if line in ("BEGIN;", "COMMIT;") or "pg_notify" in line]
    assert shape == ["BEGIN;", "COMMIT;", "BEGIN;", "COMMIT;", f"{WAKE_UP};"]
    # The inbox, outbox and audit rows in one statement, with the deletion of the claim.
    statements = "\n".join(script).split(";\n")
    inserts = [(re.findall(r"INSERT INTO (\w+)", s), re.findall(r"DELETE FROM (\w+)", s)) for s in statements if "INSERT INTO" in s]
    assert inserts == [(["command_inbox", "event_outbox", "audit_logs"], ["delivery_claims"])]
    # The replay reads the mixed run's commands (its burst, warm-up and paced ones), on topics of its own.
    replay = out["replay"]
    assert replay["commands"] > 120 and replay["throughput"] > 0 and replay["service_cpu_ms"] > 0 and replay["broker_cpu_ms"] > 0
    backlog = out["backlog"]
    assert backlog["commands"] == 150
    # Recovery is judged window by window against the same windows on a service with no backlog.
    for windows in (backlog["latency_after"], backlog["latency_without"]):
        assert len(windows) == 3 and all(w["count"] > 0 for w in windows)
