"""Pipelines that are far apart agree on conflicts: the store's first sighting of an event_id wins."""

from __future__ import annotations

from pathlib import Path

import orjson

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.guarantees.conftest import (
    StartConnector,
    Workload,
    connector_env,
    deliveries_of,
    result_keys,
    wait_all_committed,
    wait_results,
)
from tests.support.kafka import TopicReader, Topics, produce_events, wait_committed


async def test_a_reused_event_id_seen_first_far_ahead_and_last_far_behind_is_one_dlq_copy_unsent(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    """VU Custom's pipeline runs alone and sees both copies first; the intake and the other three
    platforms' pipelines start only once it is done, so they meet both copies long after."""
    work = Workload()
    original = work.event(0, 1)
    reused = work.event(0, 1, event_id=original["event_id"])
    reused["order"]["shipping_address"] = {**reused["order"]["shipping_address"], "line1": "9 Other Rd"}
    after = work.event(1, 1)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    bootstrap = broker.bootstrap_servers
    behind = [p.value for p in Platform if p is not Platform.VUCUSTOM]

    ahead = connectors(connector_env(broker, topics, "apart", store, suite, ORDER_SYNC_PIPELINES="vucustom"))
    await ahead.wait_ready()
    async with TopicReader(bootstrap, topics.success, topics.failure, topics.dlq) as reader:
        await produce_events(bootstrap, topics.input, [original, reused, after])
        ahead_wanted = deliveries_of([original, after], [Platform.VUCUSTOM])
        await wait_results(reader, topics, ahead_wanted, 30, "VU Custom's results")
        await wait_committed(bootstrap, "apart", topics.input, platforms=["vucustom"], intake=False)
        assert reader.of(topics.dlq) == [], "a platform's pipeline wrote the DLQ"
        assert await ahead.metric("order_sync_events_total") == 0, "VU Custom's process ran an intake"

        late = connectors(
            connector_env(
                broker, topics, "apart", store, suite, ORDER_SYNC_PIPELINES=",".join(["intake", *behind])
            )
        )
        await late.wait_ready()
        wanted = deliveries_of([original, after], work.platforms)
        await wait_results(reader, topics, wanted, 60, "every platform's results")
        await wait_all_committed(broker, topics, "apart")
        await reader.poll(0.5)
        dlq = reader.of(topics.dlq)
        results = result_keys(reader.of(topics.success) + reader.of(topics.failure))
        sent = work.sent(suite)

    assert [r.value for r in dlq] == [orjson.dumps(reused)]
    assert [r.headers["error.reason"] for r in dlq] == ["conflict"]
    assert set(results) == wanted and max(results.values()) == 1
    assert sorted(s.delivery for s in sent) == sorted(
        (p, work.order_number(n), 1) for n in range(2) for p in work.platforms
    ), "a platform was sent the conflicting copy, or not sent the original"
    for request in suite.sellercloud.log:
        assert request.body["ShippingAddress"]["AddressLine1"] == "123 Main St"
    assert await late.metric("order_sync_dlq_total", {"reason": "conflict"}) == 1
    print(
        "\nconflict across pipelines: VU Custom's pipeline first (alone), the intake and three platforms"
        f" later: {len(dlq)} DLQ copy, {len(sent)} requests, all for the original content"
    )
