"""Settings: one object, read from the environment, each also a CLI flag."""
import logging
import os
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Any

# librdkafka properties the service sets itself; KAFKA_* variables may override them.
KAFKA_PREFIX = "KAFKA_"
# librdkafka's own log lines go through Python logging, not straight to stderr.
_RDKAFKA_LOG = logging.getLogger("rdkafka")
# Properties librdkafka warns about when given to the wrong kind of client.
_CONSUMER_ONLY = (
    "group.", "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms", "auto.offset.reset",
    "enable.auto.", "fetch.", "queued.", "partition.assignment.strategy", "isolation.level",
)  # fmt: skip
_PRODUCER_ONLY = (
    "acks", "linger.ms", "enable.idempotence", "compression.", "message.timeout.ms", "batch.",
    "queue.buffering.", "retries", "transactional.id",
)  # fmt: skip


class ConfigError(Exception):
    """Bad or missing configuration: the CLI exits with status 2."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = ""
    database_url: str = ""
    migration_database_url: str = ""
    schema_registry_url: str = ""
    commands_topic: str = "scheduling.commands"
    replies_topic: str = "scheduling.replies"
    events_topic: str = "appointment.events"
    dlq_topic: str = "scheduling.commands.dlq"
    consumer_group: str = "schedule-consumer"
    # The HTTP port of /metrics, /healthz, /readyz and /status; 0 turns it off.
    metrics_port: int = 9400
    # /healthz fails when the poll loop has not polled for this long between batches,
    # or when a batch has run this long without a poll (a transient-failure retry polls).
    health_poll_timeout_s: int = 30
    health_batch_timeout_s: int = 120
    # Commands taken per poll, and how long a poll waits to fill a batch.
    batch_size: int = 500
    batch_linger_ms: int = 0
    # Partitions applied in parallel, each on a database connection of its own (one per
    # partition of the default six-partition topic).
    partition_workers: int = 6
    # A message in flight when the process died this many times is dead-lettered at the next start.
    poison_after_crashes: int = 3
    # Larger command values are dead-lettered unread.
    max_command_bytes: int = 1048576
    # Published outbox rows older than this are deleted by the relay; 0 keeps them forever.
    # They are what `events republish` reads, so this is also how far back it reaches.
    outbox_retention_hours: int = 168
    # SIGTERM: how long the batch in hand and the outbox may take to drain before the process exits.
    shutdown_timeout_s: int = 30
    # How long `run` keeps trying to reach the broker, database and registry before it gives up (exit 2).
    startup_timeout_s: int = 15
    # Off in production: schemas are registered from CI (`schemas register`), so a service never
    # publishes under a schema nobody reviewed.
    schema_auto_register: bool = False
    log_format: str = "json"
    log_level: str = "INFO"
    # Every other KAFKA_<PROPERTY> variable, as a librdkafka property.
    kafka_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def owner_database_url(self) -> str:
        return self.migration_database_url or self.database_url

    def kafka(self, role: str = "client", **base: Any) -> dict[str, Any]:
        """librdkafka configuration for a consumer, producer or other client: the
        service's defaults, then the KAFKA_* overrides that apply to that role."""
        conf = {"bootstrap.servers": self.kafka_bootstrap_servers, "logger": _RDKAFKA_LOG, **base}
        for key, value in self.kafka_overrides.items():
            if role != "consumer" and key.startswith(_CONSUMER_ONLY):
                continue
            if role != "producer" and key.startswith(_PRODUCER_ONLY):
                continue
            conf[key] = value
        return conf

    def require(self, *names: str) -> None:
        missing = [n.upper() for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError(f"missing configuration: {', '.join(missing)} (environment or flag)")


_NAMED = {f.name.upper() for f in fields(Settings)} - {"KAFKA_OVERRIDES"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_bool(raw: str) -> bool:
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def parser_for(f: Field) -> Callable[[str], Any]:
    """How a setting's text (environment or flag) becomes its value."""
    if f.type in (int, "int"):
        return int
    if f.type in (bool, "bool"):
        return parse_bool
    return str


def from_env(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(f.name.upper())
        if raw is None or f.name == "kafka_overrides":
            continue
        try:
            values[f.name] = parser_for(f)(raw)
        except ValueError:
            kind = "an integer" if f.type in (int, "int") else "true or false"
            raise ConfigError(f"{f.name.upper()} must be {kind}, got {raw!r}") from None
    values["kafka_overrides"] = {
        key[len(KAFKA_PREFIX):].lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith(KAFKA_PREFIX) and key not in _NAMED
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
