"""Topic checks and creation (only when asked: `--create-topics`, on by default in `dev`)."""
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.config import ConfigError, Settings


def service_topics(settings: Settings) -> list[str]:
    return [settings.commands_topic, settings.replies_topic, settings.events_topic, settings.dlq_topic]


# The partition count of the topics `--create-topics` makes; it caps useful replicas (deploy/k8s autoscaler).
PARTITIONS = 6


def ensure_topics(settings: Settings, create: bool, partitions: int = PARTITIONS, timeout: float = 15.0) -> list[str]:
    """Create the missing topics when `create`, else fail naming them; returns those created."""
    admin = AdminClient(settings.kafka())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as e:
        raise ConfigError(f"broker {settings.kafka_bootstrap_servers} unreachable within {timeout:g}s: {e.args[0].str()}") from None
    missing = [t for t in service_topics(settings) if t not in existing]
    if not missing:
        return []
    if not create:
        raise ConfigError(f"missing topics: {', '.join(missing)} (create them, or pass --create-topics)")
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing])
    for future in futures.values():
        try:
            future.result(timeout)
        except KafkaException as e:
            if "already exists" not in str(e).lower():
                raise
    return missing
