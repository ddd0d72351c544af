"""deploy/ agrees with the code: image, commands, ports, probes, environment names, partitions.

No container engine runs here, so the files are read, not run: every name they use is looked up
in the CLI parser, consumer.config.Settings and librdkafka itself."""
import re
import shlex
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, Producer

from consumer import config
from consumer.cli import build_parser
from consumer.config import Settings
from consumer.endpoints import LIVENESS, READINESS
from consumer.topics import PARTITIONS, service_topics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SCRIPT = next(name for name, target in PROJECT["scripts"].items() if target == "consumer.cli:main")
IMAGE = f"{PROJECT['name']}:{PROJECT['version']}"
SETTING_NAMES = {f.name.upper() for f in fields(Settings)} - {"KAFKA_OVERRIDES"}
# Liveness and readiness, as the service serves them on METRICS_PORT.
# Files mounted into the pod (a CA certificate) do not exist here; librdkafka's own search stands in.
POD_FILE = re.compile(r"^/etc/")


def dockerfile() -> dict[str, list[str]]:
    """Instructions of the final stage, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    instructions: dict[str, list[str]] = {}
    for line in final.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.setdefault(keyword, []).append(rest.strip())
    return instructions


def image_env() -> dict[str, str]:
    env = {}
    for line in dockerfile()["ENV"]:
        env.update(dict(pair.split("=", 1) for pair in shlex.split(line)))
    return env


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests() if m["kind"] == kind]


def pod_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) for every Deployment and Job."""
    return [
        (m["spec"]["template"]["spec"], c)
        for m in manifests() if m["kind"] in ("Deployment", "Job")
        for c in m["spec"]["template"]["spec"]["containers"]
    ]  # fmt: skip


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment; a Secret's value is represented by its key."""
    maps = {m["metadata"]["name"]: m["data"] for m in of_kind("ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        env[var["name"]] = var["value"] if "value" in var else f"<secret {var['valueFrom']['secretKeyRef']['key']}>"
    return env


def our_compose_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if s.get("image") == IMAGE}


def effective(env: dict[str, str]) -> Settings:
    """What the service makes of that environment, with the image's defaults underneath."""
    return config.from_env({**image_env(), **{k: str(v) for k, v in env.items()}})


def test_deploy_holds_only_files_this_test_reads():
    files = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    assert files == {"Dockerfile", "compose.yaml", *(f"k8s/{p.name}" for p in (DEPLOY / "k8s").glob("*.yaml"))}


def test_every_container_of_ours_runs_the_package_image():
    images = [c["image"] for _, c in pod_containers()]
    assert images and set(images) == {IMAGE}
    assert set(our_compose_services()) == {"migrate", "register-schemas", "consumer"}
    assert dockerfile()["ENTRYPOINT"] == [f'["{SCRIPT}"]']
    assert dockerfile()["USER"] == ["10001"]


def test_commands_are_subcommands_of_the_cli():
    parser = build_parser()
    used = []
    argvs = [yaml.safe_load(dockerfile()["CMD"][0])]
    argvs += [s["command"] for s in our_compose_services().values()]
    for _, container in pod_containers():
        assert "command" not in container, "keep the image's entrypoint"
        argvs.append(container["args"])
    for argv in argvs:
        used.append(parser.parse_args(argv).command)  # argparse exits on an unknown command or flag
    assert {"run", "migrate", "schemas"} <= set(used)


def test_environment_names_are_settings_or_librdkafka_properties():
    envs = [image_env()] + [s["environment"] for s in our_compose_services().values()] + [k8s_env(c) for _, c in pod_containers()]
    for env in envs:
        unknown = {n for n in env if n not in SETTING_NAMES and not n.startswith(config.KAFKA_PREFIX) and n != "PATH"}
        assert not unknown, f"not settings: {unknown}"
        settings = effective(env)
        overrides = {k: ("probe" if POD_FILE.match(v) else v) for k, v in settings.kafka_overrides.items()}
        if not overrides:
            continue
        # librdkafka rejects an unknown property or a bad value when the client is created.
        bare = {"bootstrap.servers": "", **overrides}
        Producer(config.Settings(kafka_overrides=bare).kafka("producer")).flush(0)
        Consumer(config.Settings(kafka_overrides=bare).kafka("consumer", **{"group.id": "deploy-check"})).close()


def test_sasl_and_tls_are_configured_through_kafka_variables():
    deployment = next(c for _, c in pod_containers() if c["args"] == ["run"])
    overrides = effective(k8s_env(deployment)).kafka_overrides
    assert overrides["security.protocol"] == "SASL_SSL"
    assert {"sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location"} <= set(overrides)


def test_metrics_port_probes_and_healthcheck_agree():
    port = int(image_env()["METRICS_PORT"])
    assert dockerfile()["EXPOSE"] == [str(port)]
    healthcheck = dockerfile()["HEALTHCHECK"][0]
    assert "http://127.0.0.1:' + os.environ['METRICS_PORT'] + '" + LIVENESS in healthcheck
    for service in our_compose_services().values():
        assert effective(service["environment"]).metrics_port == port
    (pod, container), = [(p, c) for p, c in pod_containers() if c["args"] == ["run"]]
    assert effective(k8s_env(container)).metrics_port == port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == LIVENESS and probes["readinessProbe"]["path"] == READINESS
    assert all(ports[probe["port"]] == port for probe in probes.values())
    (deployment,) = of_kind("Deployment")
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def test_graceful_termination_outlasts_the_drain():
    (pod, container), = [(p, c) for p, c in pod_containers() if c["args"] == ["run"]]
    assert pod["terminationGracePeriodSeconds"] > effective(k8s_env(container)).shutdown_timeout_s
    consumer = compose()["services"]["consumer"]
    assert int(consumer["stop_grace_period"].removesuffix("s")) > effective(consumer["environment"]).shutdown_timeout_s


def test_database_urls_come_from_a_secret():
    for _, container in pod_containers():
        env = {v["name"]: v for v in container.get("env", [])}
        assert "secretKeyRef" in env["DATABASE_URL"]["valueFrom"]
        assert not any(n.endswith(("DATABASE_URL", "PASSWORD")) for c in of_kind("ConfigMap") for n in c["data"])
    (job,) = of_kind("Job")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["migrate"]
    assert "secretKeyRef" in {v["name"]: v for v in migrate["env"]}["MIGRATION_DATABASE_URL"]["valueFrom"]


def test_autoscaler_follows_the_consumer_group_and_stops_at_the_partition_count():
    (scaled,) = of_kind("ScaledObject")
    (deployment,) = of_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings = effective(k8s_env(container))
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["maxReplicaCount"] == PARTITIONS
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert (meta["topic"], meta["consumerGroup"], meta["bootstrapServers"]) == (
        settings.commands_topic, settings.consumer_group, settings.kafka_bootstrap_servers,
    )  # fmt: skip
    auth = {m["metadata"]["name"]: m for m in of_kind("TriggerAuthentication")}[trigger["authenticationRef"]["name"]]
    secret_keys = {ref["key"] for ref in auth["spec"]["secretTargetRef"]}
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= secret_keys


def test_compose_runs_kraft_kafka_registry_postgres_migration_and_two_consumers():
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert "schema-registry" in services and services["postgres"]["image"].startswith("postgres:")
    consumer = services["consumer"]
    assert consumer["deploy"]["replicas"] == 2
    assert consumer["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    settings = effective(consumer["environment"])
    script = services["topics"]["command"][0]
    listed = re.search(r"for topic in ([^;]+);", script).group(1).split()
    assert listed == service_topics(settings)
    assert f"--partitions {PARTITIONS} " in script
    registry = services["schema-registry"]["environment"]["SCHEMA_REGISTRY_LISTENERS"].rsplit(":", 1)[1]
    assert settings.schema_registry_url == f"http://schema-registry:{registry}"


@pytest.mark.parametrize("service", ["migrate", "register-schemas", "consumer"])
def test_compose_services_wait_for_what_they_use(service):
    services = compose()["services"]
    needs = set(services[service]["depends_on"])
    assert needs, service
    assert needs <= set(services)
