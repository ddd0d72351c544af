"""The running service: the poll loop and the outbox relay, started and stopped together."""
import logging
import signal
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.avro_schemas import SchemaSet
from consumer.codecs import Codec
from consumer.config import Settings
from consumer.database import make_engine
from consumer.endpoints import Endpoints
from consumer.health import Probes
from consumer.metrics import Metrics
from consumer.partition_workers import PartitionWorkers
from consumer.poll_loop import PollLoop
from consumer.relay import Relay
from handlers.registry import ACTIONS

log = logging.getLogger("schedule_consumer")


def make_codec(settings: Settings, registry: SchemaRegistryClient | None = None) -> Codec:
    if registry is None and settings.schema_registry_url:
        registry = SchemaRegistryClient.new_client({"url": settings.schema_registry_url})
    return Codec(SchemaSet(), frozenset(ACTIONS), registry, auto_register=settings.schema_auto_register, max_bytes=settings.max_command_bytes)


@dataclass
class Service:
    settings: Settings
    registry: SchemaRegistryClient | None = None
    # "all", or "consumer" / "relay" when the outbox relay is deployed apart.
    role: str = "all"
    threads: dict[str, threading.Thread] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings.require("kafka_bootstrap_servers", "database_url")
        # A connection per partition worker, the relay's, and one to spare.
        self.engine = make_engine(self.settings.database_url, pool_size=self.settings.partition_workers + 2)
        self.codec = make_codec(self.settings, self.registry)
        self.metrics = Metrics()
        if self.role != "relay":
            workers = PartitionWorkers(self.engine, self.codec, self.settings, self.metrics)
            self.loop = PollLoop(self.settings, workers, self.codec, self.metrics)
        else:
            self.loop = None
        self.relay = Relay(self.engine, self.settings, metrics=self.metrics) if self.role != "consumer" else None
        watch = self.loop.watch if self.loop is not None else None
        self.probes = Probes(self.settings, watch)
        self.metrics.watch(watch, self.probes.backlog)
        self.endpoints = Endpoints(self.settings.metrics_port, self.metrics.registry, self.probes) if self.settings.metrics_port else None

    def start(self) -> None:
        if self.endpoints is not None:
            self.endpoints.start()
        workers = {"relay": self.relay and self.relay.run, "consumer": self.loop and self._consume}
        for name, target in workers.items():
            if target:
                self.threads[name] = threading.Thread(target=target, name=name, daemon=True)
                self.threads[name].start()

    def _consume(self) -> None:
        try:
            self.loop.run()
        finally:
            self.loop.processor.close()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batch in hand, commit, let the relay drain, then close."""
        deadline = time.monotonic() + (self.settings.shutdown_timeout_s if timeout is None else timeout)
        # The consumer first: its last commit wakes the relay, which then drains it.
        for name, worker in (("consumer", self.loop), ("relay", self.relay)):
            if worker is not None:
                worker.stop()
                self.threads[name].join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.threads.values()):
            log.warning("shutdown bound reached; what did not commit will be redelivered")
        if self.endpoints is not None:
            self.endpoints.stop()
        self.probes.close()
        self.engine.dispose()

    def run_forever(self) -> int:
        """Until SIGTERM or SIGINT; returns the exit status (1 when a worker died)."""
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        self.start()
        log.info("running %s: %s as group %s", self.role, self.settings.commands_topic, self.settings.consumer_group)
        status = 0
        while not stopping.wait(0.5):
            if not all(t.is_alive() for t in self.threads.values()):
                log.error("a worker thread stopped unexpectedly; shutting down")
                status = 1
                break
        log.info("stopping: draining the batch in hand and the outbox")
        self.stop()
        return status
