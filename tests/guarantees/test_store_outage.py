"""The Redis store down for 5 s mid-stream (a server of the test's own, stopped and restarted): /readyz
answers 503 meanwhile, no new request goes out without a claim, nothing is sent twice or lost, and the
work resumes once Redis is back."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.guarantees.conftest import (
    LIGHT,
    RedisServer,
    StartConnector,
    Workload,
    connector_env,
    deliveries_of,
    repeats,
    result_keys,
    wait_all_committed,
    wait_results,
)
from tests.support.kafka import TopicReader, Topics, produce_events
from tests.support.process import ConnectorProcess

ORDERS = 250
VERSIONS = (1, 2, 3, 4)
OUTAGE_S = 5.0


async def readiness(connector: ConnectorProcess) -> int:
    try:
        status, _ = await connector.get("/readyz")
    except aiohttp.ClientError:
        return 0
    return status


async def test_a_store_outage_pauses_new_work_and_loses_nothing(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    own_redis: RedisServer,
    connectors: StartConnector,
) -> None:
    work = Workload(LIGHT)
    events = [work.event(n, version) for version in VERSIONS for n in range(ORDERS)]
    expected = deliveries_of(events, work.platforms)
    suite.set_faults(latency_s=0.02)
    # A small in-flight limit keeps most of the stream in Kafka until after the outage.
    connector = connectors(
        connector_env(broker, topics, "outage", own_redis.url, suite, ORDER_SYNC_MAX_INFLIGHT_EVENTS="50")
    )
    await connector.wait_ready()
    await produce_events(broker.bootstrap_servers, topics.input, events)

    def requests() -> int:
        return sum(len(suite[p].log) for p in work.platforms)

    async with TopicReader(broker.bootstrap_servers, topics.success, topics.failure) as reader:
        await reader.wait_for(lambda r: len(r.of(topics.success)) >= len(expected) // 4, 60, "a quarter")
        await own_redis.stop()
        down_at = time.monotonic()
        results_at_down, requests_at_down = len(reader.of(topics.success)), requests()
        statuses: list[tuple[float, int]] = []
        requests_late_in_outage = None
        while (elapsed := time.monotonic() - down_at) < OUTAGE_S:
            statuses.append((elapsed, await readiness(connector)))
            if requests_late_in_outage is None and elapsed >= 2.0:
                requests_late_in_outage = requests()
            await asyncio.sleep(0.05)
        requests_at_up = requests()
        await reader.poll(0.1)
        results_at_up = len(reader.of(topics.success))
        store_up_during = await connector.metric("order_sync_store_up")
        await own_redis.start()
        up_at = time.monotonic()

        async def ready_again() -> bool:
            return await readiness(connector) == 200

        await connector.wait_until(ready_again, 30, "/readyz 200 after the store came back")
        ready_after = time.monotonic() - up_at
        await wait_results(reader, topics, expected, 90, "a result per delivery after the outage")
        finished = time.monotonic() - up_at
        await wait_all_committed(broker, topics, "outage")
        await reader.poll(0.5)
        results = result_keys(reader.of(topics.success) + reader.of(topics.failure))
        failures = reader.of(topics.failure)

    sent = work.sent(suite)
    first_503 = next((at for at, status in statuses if status == 503), None)
    print(
        f"\nstore outage: {len(events)} events x {len(work.platforms)} platforms; Redis stopped after"
        f" {results_at_down} of {len(expected)} results, down {OUTAGE_S:g}s\n"
        f"  /readyz: {len(statuses)} polls during the outage, first 503 after"
        f" {'never' if first_503 is None else f'{first_503:.2f}s'},"
        f" {sum(1 for _, s in statuses if s == 503)} answered 503;"
        f" 200 again {ready_after:.1f}s after the restart\n"
        f"  during the outage: {requests_at_up - requests_at_down} requests"
        f" ({requests_at_up - (requests_late_in_outage or 0)} in its last {OUTAGE_S - 2:g}s),"
        f" {results_at_up - results_at_down} results; all results {finished:.1f}s after the restart\n"
        f"  requests {len(sent)} for {len(expected)} deliveries; results {sum(results.values())}"
    )
    assert first_503 is not None, "/readyz never answered 503 while the store was down"
    assert all(status == 503 for at, status in statuses if at >= first_503), "/readyz flapped to 200"
    assert store_up_during == 0
    assert requests_late_in_outage is not None and requests_at_up == requests_late_in_outage, (
        "requests went out while the store could not claim them"
    )
    assert results_at_up < len(expected), "the outage was not mid-stream"
    assert failures == []
    assert set(results) == expected and max(results.values()) == 1, "a delivery was lost or reported twice"
    assert len(sent) == len(expected) and not repeats(sent), "a delivery was sent twice"


async def test_readiness_follows_the_store_while_idle(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    own_redis: RedisServer,
    connectors: StartConnector,
) -> None:
    """No work flowing, so nothing else calls the store: /readyz must still say it does not answer."""
    connector = connectors(connector_env(broker, topics, "idle-outage", own_redis.url, suite))
    await connector.wait_ready()
    await own_redis.stop()

    async def not_ready() -> bool:
        return await readiness(connector) == 503

    await connector.wait_until(not_ready, 10, "/readyz 503 with the store down and no work")
    assert await connector.metric("order_sync_store_up") == 0
    await own_redis.start()
    await connector.wait_ready(10)
    work = Workload(LIGHT)
    event = work.event(0, 1)
    async with TopicReader(broker.bootstrap_servers, topics.success) as reader:
        await produce_events(broker.bootstrap_servers, topics.input, [event])
        await wait_results(
            reader, topics, deliveries_of([event], work.platforms), 30, "work after the outage"
        )
