"""The running service: the poll loop and the outbox relay, started and stopped together."""
import logging
import signal
import threading
from dataclasses import dataclass, field

from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.avro_schemas import SchemaSet
from consumer.codecs import Codec
from consumer.config import Settings
from consumer.database import make_engine
from consumer.partition_workers import PartitionWorkers
from consumer.poll_loop import PollLoop
from consumer.relay import Relay
from handlers.registry import ACTIONS

log = logging.getLogger("schedule_consumer")


def make_codec(settings: Settings, registry: SchemaRegistryClient | None = None) -> Codec:
    if registry is None and settings.schema_registry_url:
        registry = SchemaRegistryClient.new_client({"url": settings.schema_registry_url})
    return Codec(SchemaSet(), frozenset(ACTIONS), registry)


@dataclass
class Service:
    settings: Settings
    registry: SchemaRegistryClient | None = None
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings.require("kafka_bootstrap_servers", "database_url")
        # A connection per partition worker, the relay's, and one to spare.
        self.engine = make_engine(self.settings.database_url, pool_size=self.settings.partition_workers + 2)
        self.codec = make_codec(self.settings, self.registry)
        self.loop = PollLoop(self.settings, PartitionWorkers(self.engine, self.codec, self.settings), self.codec)
        self.relay = Relay(self.engine, self.settings)

    def start(self) -> None:
        for name, target in (("relay", self.relay.run), ("consumer", self._consume)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _consume(self) -> None:
        try:
            self.loop.run()
        finally:
            self.loop.processor.close()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batch in hand, commit, let the relay drain, then close."""
        timeout = self.settings.shutdown_timeout_s if timeout is None else timeout
        self.loop.stop()
        self.threads[1].join(timeout)
        self.relay.stop()
        self.threads[0].join(timeout)
        self.engine.dispose()

    def run_forever(self) -> None:
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        self.start()
        log.info("consuming %s as group %s", self.settings.commands_topic, self.settings.consumer_group)
        while not stopping.wait(0.5):
            if not all(t.is_alive() for t in self.threads):
                log.error("a worker thread stopped unexpectedly; shutting down")
                break
        log.info("stopping: draining the batch in hand and the outbox")
        self.stop()
