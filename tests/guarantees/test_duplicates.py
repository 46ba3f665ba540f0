"""Idempotency through the pipeline: redelivered events make no request and no second result; older
versions are `skipped_stale` without a request; a reused event_id with new content goes to the DLQ."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.guarantees.conftest import (
    StartConnector,
    Workload,
    connector_env,
    deliveries_of,
    repeats,
    result_keys,
    wait_all_committed,
    wait_results,
)
from tests.support.events import encode
from tests.support.kafka import TopicReader, Topics, produce_events

ORDERS = 200


async def test_redelivered_events_send_nothing_and_older_versions_are_skipped_stale(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    work = Workload()
    first = [work.event(n, version) for version in (2, 3) for n in range(ORDERS)]
    connector = connectors(connector_env(broker, topics, "dup", f"sqlite:///{tmp_path / 'store.db'}", suite))
    await connector.wait_ready()
    # The second copy right behind the first: many copies arrive while their original is in flight.
    await produce_events(broker.bootstrap_servers, topics.input, first + first)
    expected = deliveries_of(first, work.platforms)

    async with TopicReader(broker.bootstrap_servers, topics.success, topics.failure, topics.dlq) as reader:
        await wait_results(reader, topics, expected, 90, "a result per delivery of the first copy")
        await wait_all_committed(broker, topics, "dup")
        await reader.poll(0.5)
        assert reader.of(topics.failure) == [] and reader.of(topics.dlq) == []
        results = result_keys(reader.of(topics.success))
        sent = work.sent(suite)
        duplicates = await connector.metric("order_sync_idempotency_hits_total", {"kind": "duplicate"})
        print(
            f"\nduplicates: {len(first)} events x2 -> {len(sent)} requests, {sum(results.values())} results,"
            f" {duplicates:.0f} duplicate hits"
        )
        assert set(results) == expected
        assert max(results.values()) == 1, "a delivery got a second result"
        assert len(sent) == len(expected), "requests != deliveries of the first copy"
        assert not repeats(sent)
        assert duplicates == len(expected)

        # Older versions under new event ids: v1 (below everything applied) and v2 (below v3).
        older = [work.event(n, 1) for n in range(0, ORDERS, 2)] + [
            work.event(n, 2) for n in range(1, ORDERS, 2)
        ]
        stale_expected = deliveries_of(older, work.platforms)
        await produce_events(broker.bootstrap_servers, topics.input, older)
        await wait_results(reader, topics, expected | stale_expected, 60, "a result per older event")
        await wait_all_committed(broker, topics, "dup")
        await reader.poll(0.5)
        stale_results = [
            r.json()
            for r in reader.of(topics.success)
            if r.json()["event_id"] in {e["event_id"] for e in older}
        ]
        stale_hits = await connector.metric("order_sync_idempotency_hits_total", {"kind": "stale"})
        print(
            f"stale: {len(older)} older events -> {len(stale_results)} results, {stale_hits:.0f} stale hits"
        )
        assert Counter(r["outcome"] for r in stale_results) == {"skipped_stale": len(stale_expected)}
        assert all(r["attempts"] == 0 and r["status_code"] is None for r in stale_results)
        assert len(work.sent(suite)) == len(expected), "an older version was sent"
        assert max(result_keys(reader.of(topics.success)).values()) == 1
        assert stale_hits == len(stale_expected)
        assert reader.of(topics.failure) == [] and reader.of(topics.dlq) == []


async def test_an_event_id_reused_with_other_content_goes_to_the_dlq_unsent(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    work = Workload()
    original = work.event(0, 1)
    moved = work.event(0, 1, event_id=original["event_id"])
    moved["order"]["shipping_address"] = {**moved["order"]["shipping_address"], "line1": "9 Other Rd"}
    # Back to back as well: the reused id arrives while its original may still be in flight.
    racing = work.event(1, 1)
    racing_moved = work.event(1, 1, event_id=racing["event_id"])
    racing_moved["order"]["shipping_address"] = {
        **racing_moved["order"]["shipping_address"],
        "city": "Elsewhere",
    }
    after = work.event(2, 1)
    connector = connectors(
        connector_env(broker, topics, "conflict", f"sqlite:///{tmp_path / 'store.db'}", suite)
    )
    await connector.wait_ready()
    async with TopicReader(broker.bootstrap_servers, topics.success, topics.failure, topics.dlq) as reader:
        await produce_events(broker.bootstrap_servers, topics.input, [original])
        await wait_results(reader, topics, deliveries_of([original], work.platforms), 30, "the original")
        await produce_events(broker.bootstrap_servers, topics.input, [moved, racing, racing_moved, after])
        wanted = deliveries_of([original, racing, after], work.platforms)
        await wait_results(reader, topics, wanted, 30, "results of the three distinct events")
        await wait_all_committed(broker, topics, "conflict")
        await reader.poll(0.5)
        dlq = reader.of(topics.dlq)
        results = result_keys(reader.of(topics.success) + reader.of(topics.failure))
        sent = work.sent(suite)

    # Byte for byte the two messages that reused an id, not the originals they collided with.
    assert sorted(r.value or b"" for r in dlq) == sorted(encode(e) for e in (moved, racing_moved))
    assert [r.headers["error.reason"] for r in dlq] == ["conflict", "conflict"]
    assert {r.headers["source.topic"] for r in dlq} == {topics.input}
    assert set(results) == wanted and max(results.values()) == 1
    assert sorted(s.delivery for s in sent) == sorted(
        (p, work.order_number(n), 1) for n in range(3) for p in work.platforms
    ), "a conflicting event was sent"
    for request in suite.sellercloud.log:
        assert request.body["ShippingAddress"]["AddressLine1"] == "123 Main St"
        assert request.body["ShippingAddress"]["City"] == "Ridgewood"
    assert await connector.metric("order_sync_dlq_total", {"reason": "conflict"}) == 2
