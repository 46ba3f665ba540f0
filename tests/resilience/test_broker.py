"""Broker trouble: a connector started before its broker exists waits, unready but alive, then works."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp

from connector.devtools.broker import EmbeddedBroker, free_port
from connector.devtools.simulators.server import SimulatorSuite
from tests.resilience.conftest import StartConnector, connector_env, produce_events_now
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics

RETRY_LOG_LINE = "Kafka not reachable"


async def test_connector_waits_for_a_broker_that_is_not_there_yet(
    suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here until this test starts a broker on it
    bootstrap = f"127.0.0.1:{port}"
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(f"orders.changed.{suffix}", f"succeeded.{suffix}", f"failed.{suffix}", f"dlq.{suffix}", 4)
    connector = connectors(connector_env(suite, topics, bootstrap, tmp_path / "store.db", "late"))

    probes: list[tuple[int, int]] = []

    async def alive_but_unready_after_retries() -> bool:
        try:
            health, _ = await connector.get("/healthz")
            ready, _ = await connector.get("/readyz")
        except aiohttp.ClientError:
            return False  # the HTTP server is not up yet
        probes.append((health, ready))
        assert (health, ready) == (200, 503), f"/healthz {health}, /readyz {ready} without a broker"
        return connector.log_path.read_text(errors="replace").count(RETRY_LOG_LINE) >= 3

    await connector.wait_until(alive_but_unready_after_retries, 30, "three connection retries")
    retries = connector.log_path.read_text(errors="replace").count(RETRY_LOG_LINE)

    late = EmbeddedBroker(port=port, log_file=tmp_path / "late-broker.log")
    await late.start()
    try:
        await late.create_topics([topics.input, topics.success, topics.failure, topics.dlq], partitions=4)
        await produce_events_now(bootstrap, topics.input, [make_event(f"late-{n}", 1) for n in range(20)])
        await connector.wait_ready(60)
        async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
            await reader.wait_for(
                lambda r: len(r.of(topics.success)) >= 40, 60, "40 applied results", fail_on=topics.failure
            )
            assert {r.json()["outcome"] for r in reader.of(topics.success)} == {"applied"}
        connector.assert_running()
    finally:
        late.stop()
    print(
        f"\nbroker trouble: connector alive without a broker ({len(probes)} probes: /healthz 200,"
        f" /readyz 503; {retries} connection retries logged), then joined the late broker and"
        " applied 20 events on 2 platforms"
    )
