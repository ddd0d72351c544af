"""`schedule-consumer bench`: flags, and the run from a fresh embedded stack to the printed table."""
import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

from consumer.config import Settings

log = logging.getLogger("schedule_consumer.bench")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every phase in well under a minute")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument("--encoding", choices=("avro", "json"), default="avro", help="command encoding (default single-object Avro)")
    parser.add_argument("--replicas", type=int, default=1, help="service processes in the consumer group, as replicas would run (default 1)")
    parser.add_argument("--data-dir", help="where the embedded servers keep their files (default: a temporary directory, removed)")
    sizes = parser.add_argument_group("sizes (defaults: the full benchmark)")
    for name, help in (
        ("tenants", "tenants to seed (20)"),
        ("technicians", "technicians per tenant (50)"),
        ("entries", "schedule entries in all, a tenth recurring (100000)"),
        ("commands", "commands per workload run (50000)"),
        ("backlog", "commands waiting when the backlog run starts (200000)"),
        ("latency-seconds", "length of each run at half the measured rate (20)"),
        ("pgbench-seconds", "length of the pgbench ceiling run (20)"),
        ("partitions", "partitions of the benchmark's topics (6)"),
    ):
        sizes.add_argument(f"--{name}", type=int, help=help)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from bench import phases, report
    from bench.layout import Layout
    from bench.seed import seed
    from bench.stack import start_servers
    from bench.workload import MIX, RESCHEDULE_ONLY

    sizes = phases.QUICK if args.quick else phases.Sizes()
    sizes = replace(sizes, **{f.name: getattr(args, f.name) for f in fields(phases.Sizes) if getattr(args, f.name, None) is not None})
    work = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="schedule-bench-"))
    if args.data_dir:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # A stopped benchmark still stops its servers and the service (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    servers = start_servers(work, settings)
    bench = None
    try:
        layout = Layout(sizes.tenants, sizes.technicians, sizes.entries)
        seed(servers.owner_url, layout)
        log.info("seeded %d entries in %d tenants (%.0fs)", layout.total_entries, sizes.tenants, time.monotonic() - started)
        bench = phases.Bench(servers, sizes, work, args.encoding, args.replicas)
        results: dict = {"entries": layout.total_entries, "encoding": args.encoding}
        results["reschedule"] = bench.workload_run("reschedule", RESCHEDULE_ONLY)
        # The service applies partitions in parallel, a connection each: pgbench gets as many.
        connections = max(1, min(settings.partition_workers * args.replicas, sizes.partitions))
        batch = max(1, round(results["reschedule"].commands_per_transaction))
        results["ceiling"] = bench.ceiling(batch, connections, results["reschedule"].throughput)
        results["mixed"] = bench.workload_run("mixed", MIX)
        results["replay"] = bench.replay()
        results["backlog"] = bench.backlog(MIX, results["mixed"].latency_rate)
        results["seconds"] = round(time.monotonic() - started)
    finally:
        if bench is not None:
            bench.close()
        servers.stop()
        if not args.data_dir:
            shutil.rmtree(work, ignore_errors=True)
    shown = {
        "batch_size": settings.batch_size, "batch_linger_ms": settings.batch_linger_ms,
        "partition_workers": settings.partition_workers, "replicas": args.replicas,
    }  # fmt: skip
    if args.json:
        print(json.dumps({"sizes": sizes.__dict__, "settings": shown, "machine": report.machine(), **phases.as_json(results)}, indent=2))
    else:
        print(report.table(sizes, shown, results))
        print(f"\n(total {results['seconds']}s)")
    sys.stdout.flush()
    return 0
