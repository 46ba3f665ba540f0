"""SUPERSEDE_QUEUED_VERSIONS: versions of one order waiting for a platform collapse to the newest."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.guarantees.conftest import (
    StartConnector,
    Workload,
    connector_env,
    deliveries_of,
    versions_in_arrival_order,
    wait_all_committed,
    wait_results,
)
from tests.support.kafka import TopicReader, Topics, produce_events

ORDERS = 50
VERSIONS = (1, 2, 3, 4, 5)
OUTAGE_S = 10.0
#: Sellercloud alone (the platform the chart's production example supersedes on), probing each second.
SELLERCLOUD = {
    "ORDER_SYNC_PLATFORMS__SELLERCLOUD__CIRCUIT_RESET_S": "1",
    "ORDER_SYNC_PLATFORMS__SELLERCLOUD__BACKOFF_BASE_S": "0.05",
    "ORDER_SYNC_PLATFORMS__SELLERCLOUD__BACKOFF_MAX_S": "1",
    **{
        f"ORDER_SYNC_PLATFORMS__{p.name}__ENABLED": "false" for p in Platform if p is not Platform.SELLERCLOUD
    },
}


@pytest.mark.parametrize("supersede", [True, False], ids=["supersede", "every-version"])
async def test_versions_waiting_out_an_outage_collapse_to_the_newest(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
    supersede: bool,
) -> None:
    work = Workload((Platform.SELLERCLOUD,))
    events = [work.event(n, version) for version in VERSIONS for n in range(ORDERS)]
    store = f"sqlite:///{tmp_path / 'store.db'}"
    env = connector_env(broker, topics, "supersede", store, suite, **SELLERCLOUD)
    env["ORDER_SYNC_PLATFORMS__SELLERCLOUD__SUPERSEDE_QUEUED_VERSIONS"] = str(supersede).lower()
    connector = connectors(env)
    await connector.wait_ready()
    suite.sellercloud.faults.outage_for(OUTAGE_S)
    outage_end = time.monotonic() + OUTAGE_S
    async with TopicReader(broker.bootstrap_servers, topics.success, topics.failure) as reader:
        await produce_events(broker.bootstrap_servers, topics.input, events)
        expected = deliveries_of(events, work.platforms)
        await wait_results(reader, topics, expected, OUTAGE_S + 60, "a result per version")
        await wait_all_committed(broker, topics, "supersede", platforms=work.platforms)
        await reader.poll(0.5)
        results = [r.json() for r in reader.of(topics.success) + reader.of(topics.failure)]
    assert time.monotonic() > outage_end
    applied = [s for s in work.sent(suite) if s.status is not None and s.status < 300]
    outcomes = Counter(r["outcome"] for r in results)
    assert len(results) == len(expected) and not reader.of(topics.failure)
    for (_, order), versions in versions_in_arrival_order(applied).items():
        assert versions == sorted(versions), f"{order} applied out of order: {versions}"
    refused = sum(1 for s in work.sent(suite) if s.status == 503)
    if supersede:
        assert outcomes == {"applied": ORDERS, "superseded": ORDERS * (len(VERSIONS) - 1)}
        assert sorted((s.order_number, s.version) for s in applied) == sorted(
            (work.order_number(n), VERSIONS[-1]) for n in range(ORDERS)
        ), "one request per order, its newest version"
        newest = {r["order_number"]: r["order_version"] for r in results if r["outcome"] == "applied"}
        assert set(newest.values()) == {VERSIONS[-1]}
    else:
        assert outcomes == {"applied": ORDERS * len(VERSIONS)}
        assert len(applied) == ORDERS * len(VERSIONS), "every version is sent"
    print(
        f"\nsupersede={supersede}: Sellercloud down {OUTAGE_S:.0f}s while {ORDERS} orders x {len(VERSIONS)}"
        f" versions arrived: {len(applied)} requests applied, {refused} refused during the outage;"
        f" results {dict(outcomes)}"
    )
