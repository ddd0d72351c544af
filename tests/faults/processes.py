"""The service as a real operating-system process, so tests can SIGKILL it."""
import os
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from consumer.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that configures `schedule-consumer run` like `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    for f in fields(Settings):
        if f.name != "kafka_overrides":
            env[f.name.upper()] = str(getattr(settings, f.name))
    for key, value in settings.kafka_overrides.items():
        env["KAFKA_" + key.upper().replace(".", "_")] = value
    env.update(LOG_FORMAT="json", METRICS_PORT="0", **extra)
    return env


class ServiceProcess:
    def __init__(self, settings: Settings, log_dir: Path, name: str, only: str | None = None, **env: str) -> None:
        self.argv = [sys.executable, "-m", "consumer.cli", "run"] + (["--only", only] if only else [])
        self.env = service_env(settings, **env)
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit status once it has drained."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
