"""The benchmark's servers, and the service under test as a subprocess whose memory is watched."""
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psycopg

from bench import cpu
from consumer.config import Settings
from consumer.embedded import BROKER_CLIENT_TUNING, RUNTIME_ROLE, Broker, Postgres
from consumer.migrate import migrate

DATABASE = "bench"
# Statement counts (pg_stat_statements) and commit times (for commit → publish latency).
SERVER_SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "track_commit_timestamp": "on"}
BROKER_TUNING = {**BROKER_CLIENT_TUNING, "max.poll.interval.ms": "30000"}


@dataclass
class Servers:
    postgres: Postgres
    broker: Broker
    settings: Settings

    @property
    def owner_url(self) -> str:
        return self.settings.owner_database_url

    def stop(self) -> None:
        self.broker.stop()
        self.postgres.stop()


def start_servers(data_dir: Path, base: Settings) -> Servers:
    """Embedded PostgreSQL (restarted once with the statistics settings) and the broker, migrated."""
    postgres = Postgres(data_dir / "pgdata").start()
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        for name, value in SERVER_SETTINGS.items():
            conn.execute(f"alter system set {name} = '{value}'")
    postgres.stop()
    postgres = Postgres(data_dir / "pgdata").start()
    postgres.create_database(DATABASE)
    with psycopg.connect(postgres.url(DATABASE), autocommit=True) as conn:
        conn.execute("create extension if not exists pg_stat_statements")
    broker = Broker(log_path=data_dir / "broker.log").start()
    settings = replace(
        base,
        kafka_bootstrap_servers=broker.bootstrap,
        migration_database_url=postgres.url(DATABASE),
        database_url=postgres.url(DATABASE, user=RUNTIME_ROLE),
        kafka_overrides={**BROKER_TUNING, **base.kafka_overrides},
    )
    migrate(settings)
    return Servers(postgres, broker, settings)


def service_env(settings: Settings) -> dict[str, str]:
    """The environment `schedule-consumer run` reads its settings from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    for name, value in asdict(settings).items():
        if name == "kafka_overrides":
            env.update({f"KAFKA_{k.upper().replace('.', '_')}": str(v) for k, v in value.items()})
        elif value not in ("", None) and name != "migration_database_url":
            env[name.upper()] = str(value)
    return env


class ServiceProcess:
    """`schedule-consumer run` in a child process; samples its resident memory."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", "run"], env=service_env(settings), stdout=self.log, stderr=subprocess.STDOUT
        )
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def alive(self) -> bool:
        return self.process.poll() is None

    def last_lines(self, n: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def _status(self, field: str) -> float:
        """A /proc/<pid>/status memory field, in MB (0 once the process is gone)."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
        return 0.0

    def _sample(self) -> None:
        import time

        start = time.monotonic()
        while not self._stop.wait(0.25):
            self.samples.append((time.monotonic() - start, self._status("VmRSS")))

    @property
    def peak_rss_mb(self) -> float:
        """The kernel's high-water mark of resident memory for the whole process life."""
        return max(self._status("VmHWM"), max((s for _, s in self.samples), default=0.0))

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM (drain and close), then the peak RSS it reached."""
        peak = self.peak_rss_mb
        self._stop.set()
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return peak


class Replicas:
    """One or more service processes in the same consumer group, measured as one service."""

    def __init__(self, processes: list[ServiceProcess]) -> None:
        self.processes = processes

    def alive(self) -> bool:
        return all(p.alive() for p in self.processes)

    def last_lines(self, n: int = 15) -> str:
        return "\n".join(p.last_lines(n) for p in self.processes)

    def cpu_seconds(self) -> float:
        return sum(cpu.process_seconds(p.process.pid) for p in self.processes)

    def stop(self) -> float:
        """Stops every replica; the highest peak RSS among them."""
        return max(p.stop() for p in self.processes)
