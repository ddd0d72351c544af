"""Fault-injection fixtures: the service as processes the tests can kill, on topics of their own."""
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine

from consumer.config import Settings
from consumer.demo import DemoTenant
from tests.conftest import new_tenant
from tests.faults.processes import ServiceProcess
from tests.harness import Stack, topic_settings

PARTITIONS = 6


@pytest.fixture
def fault_settings(base_settings: Settings) -> Settings:
    settings = topic_settings(replace(base_settings, batch_size=100), f"f{uuid.uuid4().hex[:10]}", partitions=PARTITIONS)
    return settings


@pytest.fixture
def observer(fault_settings: Settings, owner: Engine) -> Iterator[Stack]:
    """Sends commands and reads every output topic; the service runs elsewhere."""
    stack = Stack(fault_settings, owner, start=False)
    yield stack
    stack.close()


@pytest.fixture
def tenants(owner: Engine) -> list[DemoTenant]:
    return [new_tenant(owner) for _ in range(PARTITIONS)]


@pytest.fixture
def spawn(fault_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ServiceProcess]]:
    """Start service processes; whatever is still running at the end is killed,
    and the logs of all of them are shown when the test failed."""
    started: list[ServiceProcess] = []

    def start(name: str, settings: Settings | None = None, only: str | None = None, **env: str) -> ServiceProcess:
        process = ServiceProcess(settings or fault_settings, tmp_path, name, only, **env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.alive:
            process.kill()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for process in started:
            print(f"--- {process.log_path.name} ---\n{process.log_tail()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
