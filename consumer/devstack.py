"""`schedule-consumer dev`: the whole service on embedded PostgreSQL and broker, in the foreground."""
import json
import logging
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from consumer.config import Settings
from consumer.database import make_engine
from consumer.demo import seed
from consumer.embedded import BROKER_CLIENT_TUNING, RUNTIME_ROLE, Broker, Postgres, free_port
from consumer.migrate import migrate
from consumer.schema_registration import register
from consumer.service import Service
from consumer.topics import ensure_topics
from schemas.tables import tenants

log = logging.getLogger("schedule_consumer.dev")

DEMO_TENANT = "11111111-2222-4333-8444-555555555555"
DEMO_BASE = datetime(2027, 1, 4, tzinfo=timezone.utc)  # a Monday
DEV_BROKER_PORT = 19092
DATABASE = "schedule"
BROKER_TUNING = {**BROKER_CLIENT_TUNING, "max.poll.interval.ms": "10000"}


def run_dev(settings: Settings, data_dir: Path, stack_file: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    postgres = broker = None
    settings = replace(settings, kafka_overrides={**BROKER_TUNING, **settings.kafka_overrides})
    if settings.metrics_port:
        settings = replace(settings, metrics_port=_port(settings.metrics_port))
    if not settings.database_url:
        postgres = Postgres((data_dir / "pgdata").resolve()).start()
        postgres.create_database(DATABASE)
        settings = replace(
            settings,
            migration_database_url=postgres.url(DATABASE),
            database_url=postgres.url(DATABASE, user=RUNTIME_ROLE),
        )
    if not settings.kafka_bootstrap_servers:
        broker = Broker(port=_port(DEV_BROKER_PORT), log_path=data_dir / "broker.log").start()
        settings = replace(settings, kafka_bootstrap_servers=broker.bootstrap)
    try:
        migrate(settings)
        _seed_demo(settings)
        ensure_topics(settings, create=True)
        if settings.schema_registry_url:
            register(settings)  # what CI does before a production rollout
        stack_file.parent.mkdir(parents=True, exist_ok=True)
        stack_file.write_text(json.dumps({k: v for k, v in asdict(settings).items() if k != "kafka_overrides" and v}, indent=2))
        _banner(settings)
        Service(settings).run_forever()
    finally:
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
        stack_file.unlink(missing_ok=True)
    return 0


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _seed_demo(settings: Settings) -> None:
    engine = make_engine(settings.owner_database_url)
    try:
        with engine.begin() as conn:
            if conn.execute(tenants.select().where(tenants.c.tenant == DEMO_TENANT)).first() is None:
                seed(conn, DEMO_TENANT, DEMO_BASE)
                log.info("seeded the demo tenant %s", DEMO_TENANT)
    finally:
        engine.dispose()


def _banner(settings: Settings) -> None:
    print(
        f"""
schedule-consumer dev stack
  PostgreSQL  {settings.database_url}   (runtime role; owner: {settings.owner_database_url})
  Kafka       {settings.kafka_bootstrap_servers}
  topics      commands={settings.commands_topic} replies={settings.replies_topic} events={settings.events_topic} dlq={settings.dlq_topic}
  metrics     {f"http://localhost:{settings.metrics_port}/metrics (and /healthz /readyz /status)" if settings.metrics_port else "off"}
  demo tenant {DEMO_TENANT}

In another terminal, send a reschedule and see its reply:
  .venv/bin/schedule-consumer send examples/reschedule.json
and watch the events:
  .venv/bin/schedule-consumer tail events --from-beginning

Ctrl-C stops everything.
""",
        flush=True,
    )
