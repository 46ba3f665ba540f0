"""Issue 3: `order-sync run` against the four simulators: every delivery applied, every request accepted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.samples import generate
from connector.devtools.simulators.server import SimulatorSuite
from tests.support.kafka import TopicReader, Topics, produce
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]


async def test_every_delivery_is_applied_and_accepted_by_the_simulators(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    samples = generate(400, seed=11, unmappable=False, malformed=False)
    deliveries = sum(len(platforms) for platforms in samples.targets.values())
    connector = connectors(
        {
            **topics.env("simulators"),
            **suite.connector_env(),
            "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{tmp_path / 'store.db'}",
        }
    )
    await connector.wait_ready()
    await produce(broker.bootstrap_servers, topics.input, samples.messages)
    async with TopicReader(broker.bootstrap_servers, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= deliveries, 90, "every delivery", fail_on=topics.failure
        )
        outcomes = Counter(r.json()["outcome"] for r in reader.of(topics.success))
    # The sample set re-sends a few old versions under new event ids: those are skipped, not sent.
    assert outcomes["applied"] + outcomes["skipped_stale"] == deliveries
    assert outcomes["applied"] >= deliveries * 0.9
    statuses: Counter[int | None] = Counter()
    for simulator in suite.simulators.values():
        statuses.update(entry.status for entry in simulator.log)
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) == outcomes["applied"]
