"""Kafka's group changes strand nothing (issue "pauses across rebalances"): a platform paused with
`--until` while its group rebalances delivers everything it held once the pause ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.resilience.conftest import VENTMERE_ACCOUNT, StartConnector, connector_env, produce_events_now
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, produce_with_headers
from tests.support.process import ConnectorProcess, run_cli

VM = Platform.VENTMERE
ONLY_VENTMERE = {
    "KAFKA__STATUS_INTERVAL_S": "1",
    **{f"PLATFORMS__{p.name}__ENABLED": "false" for p in Platform if p is not VM},
}


def ventmere_event(n: int) -> dict[str, object]:
    return make_event(
        f"grp-{n}",
        1,
        {"ventmere": {"order_id": f"vm-grp-{n}", "account_id": VENTMERE_ACCOUNT}},
    )


async def test_a_pause_until_that_spans_a_rebalance_delivers_everything_it_held(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    env = connector_env(
        suite, topics, bootstrap, tmp_path / "store.db", "grp", **ONLY_VENTMERE, **topics.control_topics()
    )
    first, second = connectors(env), connectors(env)
    await asyncio.gather(first.wait_ready(60), second.wait_ready(60))
    until = datetime.now(UTC) + timedelta(seconds=12)
    code, out = await run_cli(
        first.env, "pause", "ventmere", "--reason", "rebalance", "--until", until.isoformat()
    )
    assert code == 0, out
    # A rolling restart during the pause: a new replica starts and is ready, then an old one stops.
    third = connectors(env)
    await third.wait_ready(60)
    second.terminate()
    await second.wait_exit()
    events = [ventmere_event(n) for n in range(360)]
    await produce_events_now(bootstrap, topics.input, events)
    ended = until.timestamp() - time.time() + time.monotonic()
    assert ended > time.monotonic(), "the pause ended before the rebalance: the test proves nothing"
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len({x.json()["result_id"] for x in r.of(topics.success)}) >= len(events),
            ended + 30 - time.monotonic(),
            "every held delivery",
            fail_on=topics.failure,
        )
    took = time.monotonic() - ended

    await first.wait_until(lambda: _equals(ventmere_lag(first, third), 0), 10, "ventmere's lag 0")
    print(f"\nall {len(events)} held deliveries made {took:.1f} s after the pause's --until; lag 0")
    assert took <= 5, f"held deliveries made {took:.1f} s after the pause ended"


async def ventmere_lag(*replicas: ConnectorProcess) -> int:
    """Ventmere's lag over its partitions on these replicas (from their status documents)."""
    total = 0
    for replica in replicas:
        _, document = await replica.get("/status")
        for pipeline in orjson.loads(document)["pipelines"]:
            if pipeline["name"] == VM.value:
                total += sum(lag or 0 for lag in pipeline["lag"].values())
    return total


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _at_least(value: Awaitable[int], expected: int) -> bool:
    return await value >= expected


async def _fetching_paused(replica: ConnectorProcess) -> bool:
    _, document = await replica.get("/status")
    return any(p["name"] == VM.value and p["paused"] for p in orjson.loads(document)["pipelines"])


async def test_the_lag_of_a_paused_platform_keeps_being_measured(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    env = connector_env(
        suite, topics, bootstrap, tmp_path / "store.db", "lag", **ONLY_VENTMERE, **topics.control_topics()
    )
    connector = connectors(env)
    await connector.wait_ready(60)
    code, out = await run_cli(connector.env, "pause", "ventmere", "--reason", "lag")
    assert code == 0, out
    await connector.wait_until(lambda: _fetching_paused(connector), 10, "fetching paused")
    # One batch per event: this broker answers ListOffsets with the last batch's base offset, so
    # a partition's lag shows one less than it is (Apache Kafka's answer is the log end).
    events = [ventmere_event(n) for n in range(50)]
    await produce_with_headers(
        bootstrap, topics.input, [(e["order"]["order_number"].encode(), orjson.dumps(e), []) for e in events]
    )
    # Nothing is fetched while paused: the lag grows with the input, as an operator expects to see.
    await connector.wait_until(
        lambda: _at_least(ventmere_lag(connector), len(events) - topics.partitions),
        10,
        "the lag of the paused platform",
    )
    code, out = await run_cli(connector.env, "resume", "ventmere")
    assert code == 0, out
    await connector.wait_until(lambda: _equals(ventmere_lag(connector), 0), 20, "lag 0 after the resume")
