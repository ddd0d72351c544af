"""Liveness, readiness and status of a running service, as plain data for the HTTP endpoints."""
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import text

from consumer import outbox
from consumer.config import Settings
from consumer.database import make_engine
from consumer.loop_watch import LoopWatch
from handlers.timeutil import iso

# A probe answers within this, so an orchestrator's probe timeout is not spent waiting on a dead peer.
PROBE_TIMEOUT_S = 3


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class Probes:
    def __init__(self, settings: Settings, loop: LoopWatch | None) -> None:
        """`loop` is None in a relay-only process, which has no consumer to watch."""
        self.settings = settings
        self.loop = loop
        # Its own small pool with short timeouts: a probe must not queue behind the
        # batch transaction, nor hang on a database that does not answer.
        self.engine = make_engine(
            settings.database_url, pool_size=1, max_overflow=2,
            connect_args={"connect_timeout": PROBE_TIMEOUT_S, "options": f"-c statement_timeout={PROBE_TIMEOUT_S * 1000}"},
        )  # fmt: skip
        self.registry = (
            SchemaRegistryClient.new_client({"url": settings.schema_registry_url, "timeout": PROBE_TIMEOUT_S, "max.retries": 0})
            if settings.schema_registry_url
            else None
        )

    def close(self) -> None:
        self.engine.dispose()

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Down when the loop stopped polling: idle past the poll bound, or a batch past the batch bound."""
        if self.loop is None:
            return True, {"role": "relay"}
        since_poll, batch = self.loop.seconds_since_poll(), self.loop.batch_seconds()
        poll_bound, batch_bound = self.settings.health_poll_timeout_s, self.settings.health_batch_timeout_s
        body: dict[str, Any] = {"seconds_since_poll": round(since_poll, 3), "batch_seconds": None if batch is None else round(batch, 3)}
        if since_poll > poll_bound and batch is None:
            body["reason"] = f"the poll loop has not polled for {since_poll:.0f}s (HEALTH_POLL_TIMEOUT_S={poll_bound})"
        elif since_poll > poll_bound and batch > batch_bound:
            body["reason"] = f"a batch has run for {batch:.0f}s without a poll (HEALTH_BATCH_TIMEOUT_S={batch_bound})"
        return "reason" not in body, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks = {"kafka": self._kafka(), "database": self._database()}
        if self.registry is not None:
            checks["schema_registry"] = self._registry()
        return all(c["ok"] for c in checks.values()), {"checks": checks}

    def _kafka(self) -> dict[str, Any]:
        if self.loop is None:
            return {"ok": True, "detail": "relay only: no group membership"}
        assigned = self.loop.assignment()
        if assigned:
            return {"ok": True, "detail": f"{len(assigned)} partitions assigned"}
        if self.loop.joined():
            return {"ok": True, "detail": "joined the group; no partitions for this member"}
        state = self.loop.group_state
        return {"ok": False, "detail": f"not joined to the group yet (state {state.get('state', 'unknown')}, join {state.get('join_state', 'unknown')})"}

    def _database(self) -> dict[str, Any]:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("select 1"))
            return {"ok": True}
        except Exception as e:
            return {"ok": False, "detail": _first_line(e)}

    def _registry(self) -> dict[str, Any]:
        try:
            self.registry.get_config()
            return {"ok": True}
        except Exception as e:
            return {"ok": False, "detail": _first_line(e)}

    def backlog(self) -> outbox.Backlog:
        with self.engine.begin() as conn:
            return outbox.backlog(conn)

    def status(self) -> dict[str, Any]:
        try:
            b = self.backlog()
            backlog: dict[str, Any] = {"backlog": sum(b.by_kind.values()), "by_kind": b.by_kind, "oldest_age_seconds": b.oldest_age_seconds}
        except Exception as e:
            backlog = {"error": _first_line(e)}
        if self.loop is None:
            return {"consumer_group": None, "partitions": [], "statistics_at": None, "seconds_since_poll": None, "outbox": backlog}
        return {
            "consumer_group": self.settings.consumer_group,
            "partitions": [asdict(p) for p in self.loop.partitions()],
            "statistics_at": None if self.loop.stats_at is None else iso(datetime.fromtimestamp(self.loop.stats_at, timezone.utc)),
            "seconds_since_poll": round(self.loop.seconds_since_poll(), 3),
            "outbox": backlog,
        }
