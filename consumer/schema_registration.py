"""Schema Registry subjects: `schemas register` (from CI) and the start-up check that they hold our schemas."""
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from consumer.avro_schemas import AvroSchema, SchemaSet
from consumer.codecs import record_subject, value_subject
from consumer.config import ConfigError, Settings


class RegistryRefused(Exception):
    """The registry answered and said no: an incompatible schema, a bad request, no permission."""


def subjects(settings: Settings, schemas: SchemaSet, reply_topics: Iterable[str] = ()) -> list[tuple[str, AvroSchema]]:
    """Every schema with the subject the service writes it under (commands too: `send` and
    producers frame them the same way)."""
    pairs = [(value_subject(settings.commands_topic), schemas.command)]
    pairs += [(value_subject(topic), schemas.result) for topic in dict.fromkeys([settings.replies_topic, *reply_topics])]
    pairs += [(record_subject(settings.events_topic, schema.name), schema) for schema in schemas.events]
    placed = {schema.name for _, schema in pairs}
    unplaced = sorted(set(schemas.by_name) - placed)
    if unplaced:
        raise ValueError(f"no subject for {', '.join(unplaced)}: not the command, the result or an event")
    return pairs


def registry_client(settings: Settings) -> SchemaRegistryClient:
    settings.require("schema_registry_url")
    return SchemaRegistryClient.new_client({"url": settings.schema_registry_url, "timeout": settings.startup_timeout_s})


def register(settings: Settings, registry: SchemaRegistryClient | None = None, reply_topics: Iterable[str] = ()) -> list[tuple[str, int]]:
    """Register every schema under its subject; returns (subject, schema id) pairs."""
    registry = registry or registry_client(settings)
    registered = []
    for subject, schema in subjects(settings, SchemaSet(), reply_topics):
        try:
            registered.append((subject, registry.register_schema(subject, Schema(schema.text, "AVRO"))))
        except SchemaRegistryError as e:
            raise RegistryRefused(f"{subject}: {e.error_message} (HTTP {e.http_status_code})") from e
        except Exception as e:  # the client's HTTP transport errors, raised after its own retries
            raise _unreachable(settings, e) from e
    return registered


def unregistered(settings: Settings, registry: SchemaRegistryClient) -> list[str]:
    """Subjects that do not hold the schema the service would write under them."""
    missing = []
    for subject, schema in subjects(settings, SchemaSet()):
        try:
            registry.lookup_schema(subject, Schema(schema.text, "AVRO"))
        except SchemaRegistryError as e:
            if e.http_status_code != 404:
                raise RegistryRefused(f"{subject}: {e.error_message} (HTTP {e.http_status_code})") from e
            missing.append(subject)
        except Exception as e:  # the client's HTTP transport errors, raised after its own retries
            raise _unreachable(settings, e) from e
    return missing


def _unreachable(settings: Settings, error: Exception) -> ConfigError:
    return ConfigError(f"schema registry {redact(settings.schema_registry_url)} unreachable: {error}")


def redact(url: str) -> str:
    """A URL fit for a log line: without the password it may carry."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
