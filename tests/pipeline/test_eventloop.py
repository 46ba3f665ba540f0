"""`order-sync run` runs on uvloop by default and on asyncio's own loop when asked; both deliver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from connector.commands import eventloop
from connector.devtools.broker import EmbeddedBroker
from tests.pipeline.conftest import pipeline_env
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, produce_events
from tests.support.process import ConnectorProcess
from tests.support.servers import RecordingServer

StartConnector = Callable[[dict[str, str]], ConnectorProcess]


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_picks_the_named_loop() -> None:
    # Called from a plain (sync) test: eventloop.run starts and closes a loop of its own.
    assert eventloop.run(_loop_module(), "uvloop").startswith("uvloop")
    assert eventloop.run(_loop_module(), "asyncio").startswith("asyncio")


def _started_on(log_path: Path) -> str:
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            entry = orjson.loads(line)
            if entry.get("message") == "order-sync starting":
                return str(entry["event_loop"])
    raise AssertionError(f"no start line in {log_path}")


@pytest.mark.parametrize(("setting", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_connector_delivers_on_either_loop(
    broker: EmbeddedBroker,
    topics: Topics,
    endpoint: RecordingServer,
    connectors: StartConnector,
    tmp_path: Path,
    setting: str | None,
    expected: str,
) -> None:
    bootstrap = broker.bootstrap_servers
    env = pipeline_env(topics, f"loop-{expected}", endpoint, bootstrap, tmp_path / "store.db")
    if setting is not None:
        env["ORDER_SYNC_EVENT_LOOP"] = setting
    connector = connectors(env)
    await connector.wait_ready()
    await produce_events(bootstrap, topics.input, [make_event(f"ord-{n}", 1) for n in range(10)])
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 20, 60, "20 results")
    connector.terminate()
    assert await connector.wait_exit(60) == 0
    assert _started_on(connector.log_path) == expected
