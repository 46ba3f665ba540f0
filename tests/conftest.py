"""Shared fixtures: one embedded broker per session, connector processes that are always stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.support.kafka import Topics, create_topics
from tests.support.process import ConnectorProcess
from tests.support.servers import RecordingServer

#: Fixtures that start subprocesses: a test that uses one is `slow` (`pytest -m "not slow"` skips it).
SUBPROCESS_FIXTURES = frozenset({"connectors"})


#: Tests that measure paces, windows and deadlines in wall-clock time: `timing`, run three at a time
#: after the others (`make test` runs the others four modules at a time; beside those CPU-heavy
#: tests, these miss their marks; beside each other they mostly sleep).
TIMING_PATHS = ("tests/resilience/", "tests/test_bench_smoke.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parent.parent
    for item in items:
        if SUBPROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if str(item.path.relative_to(root)).startswith(TIMING_PATHS):
            item.add_marker(pytest.mark.timing)


@pytest.fixture(scope="session")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedBroker]:
    embedded = EmbeddedBroker(log_file=tmp_path_factory.mktemp("broker") / "tansu.log")
    await embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
async def topics(broker: EmbeddedBroker) -> Topics:
    return await create_topics(broker.bootstrap_servers, partitions=4)


@pytest.fixture
def connectors(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], ConnectorProcess]]:
    """Starts `order-sync run` subprocesses; every one is killed at teardown if still running."""
    started: list[ConnectorProcess] = []

    def start(env: dict[str, str]) -> ConnectorProcess:
        process = ConnectorProcess(env, tmp_path / f"connector-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
async def endpoint() -> AsyncIterator[RecordingServer]:
    """A recording HTTP endpoint standing in for platforms (`tests/pipeline/conftest.py` says how)."""
    server = RecordingServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def suite() -> AsyncIterator[SimulatorSuite]:
    """The four platform simulators in the test process, on a free port."""
    async with SimulatorSuite() as running:
        yield running
