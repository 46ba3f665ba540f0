"""Issue 2 acceptance: backpressure, graceful shutdown and restart, two members of one group."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker
from tests.pipeline.conftest import PLATFORMS, pipeline_env, versions_by_order
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, produce_events
from tests.support.process import ConnectorProcess
from tests.support.servers import RecordingServer

StartConnector = Callable[[dict[str, str]], ConnectorProcess]


async def test_backpressure_bounds_inflight_events_and_pauses_fetching(
    broker: EmbeddedBroker,
    topics: Topics,
    endpoint: RecordingServer,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    endpoint.hang = True
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        {
            **pipeline_env(topics, "bp", endpoint, bootstrap, tmp_path / "store.db"),
            "ORDER_SYNC_MAX_INFLIGHT_EVENTS": "50",
            "ORDER_SYNC_PLATFORMS__VUCUSTOM__TIMEOUT_S": "120",
            "ORDER_SYNC_PLATFORMS__VENTMERE__TIMEOUT_S": "120",
        }
    )
    await connector.wait_ready()
    await produce_events(bootstrap, topics.input, [make_event(f"ord-{n}", 1) for n in range(400)])

    async def paused() -> bool:
        held = [await connector.metric("order_sync_partitions_paused", {"pipeline": p}) for p in PLATFORMS]
        return held == [1, 1]

    await connector.wait_until(paused, 30, "both platform pipelines paused")
    samples: dict[str, list[float]] = {p: [] for p in PLATFORMS}
    for _ in range(20):
        for platform in PLATFORMS:
            samples[platform].append(
                await connector.metric("order_sync_inflight_events", {"pipeline": platform})
            )
        await asyncio.sleep(0.05)
    assert {p: max(s) for p, s in samples.items()} == {p: 50 for p in PLATFORMS}

    # The intake is not held by the platforms: it validated every message and is not paused.
    async def intake_done() -> bool:
        return await connector.metric("order_sync_events_total") == 400

    await connector.wait_until(intake_done, 30, "the intake to count all 400 events")
    assert await connector.metric("order_sync_partitions_paused", {"pipeline": "intake"}) == 0
    for platform in PLATFORMS:
        assert await connector.metric("order_sync_backpressure_pauses_total", {"pipeline": platform}) >= 1
    assert endpoint.in_progress <= 100


async def test_sigterm_exits_zero_and_a_restart_finishes_the_rest(
    broker: EmbeddedBroker,
    topics: Topics,
    endpoint: RecordingServer,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    endpoint.delay_s = 0.02
    bootstrap = broker.bootstrap_servers
    env = {
        **pipeline_env(topics, "restart", endpoint, bootstrap, tmp_path / "store.db"),
        "ORDER_SYNC_MAX_INFLIGHT_EVENTS": "40",
    }
    events = [make_event(f"ord-{n % 150}", 1 + n // 150) for n in range(600)]
    first = connectors(env)
    await first.wait_ready()
    await produce_events(bootstrap, topics.input, events)
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 200, 60, "200 results before SIGTERM")
        first.terminate()
        assert await first.wait_exit(60) == 0
        second = connectors(env)
        await reader.wait_for(lambda r: len(r.records) >= 1200, 120, "all 1200 results after restart")
        await reader.poll(1.0)
        second.terminate()
        assert await second.wait_exit(60) == 0
        results = [r.json() for r in reader.of(topics.success)]
        assert reader.of(topics.failure) == []
    per_delivery = Counter(r["result_id"] for r in results)
    assert len(per_delivery) == 1200
    assert max(per_delivery.values()) == 1, "a delivery was reported twice across a graceful restart"
    assert all(
        v == sorted(v) and set(v) == {1, 2, 3, 4} for v in versions_by_order(endpoint.requests).values()
    )


async def test_two_members_share_the_work_and_survive_one_stopping(
    broker: EmbeddedBroker,
    topics: Topics,
    endpoint: RecordingServer,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    endpoint.delay_s = 0.01
    bootstrap = broker.bootstrap_servers
    env = {
        **pipeline_env(topics, "pair", endpoint, bootstrap, tmp_path / "store.db"),
        "ORDER_SYNC_MAX_INFLIGHT_EVENTS": "20",
    }
    one, two = connectors(env), connectors(env)
    await one.wait_ready()
    await two.wait_ready()
    events = [make_event(f"ord-{n % 100}", 1 + n // 100) for n in range(500)]
    await produce_events(bootstrap, topics.input, events)
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 150, 60, "work under way")
        assert await one.metric("order_sync_events_total") > 0
        assert await two.metric("order_sync_events_total") > 0
        one.terminate()
        assert await one.wait_exit(60) == 0
        await reader.wait_for(lambda r: len(r.records) >= 1000, 120, "all results")
        await reader.poll(1.0)
        results = [r.json() for r in reader.of(topics.success)]
        assert reader.of(topics.failure) == []
    per_delivery = Counter(r["result_id"] for r in results)
    assert len(per_delivery) == 1000 and max(per_delivery.values()) == 1
    versions = versions_by_order(endpoint.requests)
    assert all(v == [1, 2, 3, 4, 5] for v in versions.values()), (
        "out of order or repeated across the rebalance"
    )
