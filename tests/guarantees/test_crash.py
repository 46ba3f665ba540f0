"""A hard kill mid-stream (SIGKILL), then a restart on the same SQLite store: every delivery gets its
result, and the requests repeated are at most those that were in flight when the process died."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from connector.broker import EmbeddedBroker
from connector.models import Platform
from connector.simulators.server import SimulatorSuite
from tests.guarantees.conftest import (
    CLAIM_LEASE_S,
    StartConnector,
    Workload,
    connector_env,
    deliveries_of,
    repeats,
    result_keys,
    versions_in_arrival_order,
    wait_all_committed,
    wait_results,
)
from tests.support.kafka import TopicReader, Topics, produce_events

ORDERS = 500
VERSIONS = (1, 2, 3, 4)


def outcomes_recorded(store: Path) -> set[tuple[str, str]]:
    """(event_id, platform) whose outcome the store holds (done or reported), read from the file."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT event_id, platform FROM deliveries WHERE state IN ('done', 'reported')")
        return {(event_id, platform) for event_id, platform in rows}


async def test_a_hard_kill_repeats_at_most_the_requests_in_flight(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    second_suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    work = Workload()
    events = [work.event(n, version) for version in VERSIONS for n in range(ORDERS)]
    event_ids = {(e["order"]["order_number"], e["order"]["version"]): e["event_id"] for e in events}
    expected = deliveries_of(events, work.platforms)
    store = tmp_path / "store.db"
    for simulators in (suite, second_suite):
        simulators.set_faults(latency_s=0.02)
    # Each process gets its own simulators, so every request is known by the process that sent it.
    first = connectors(connector_env(broker, topics, "crash", f"sqlite:///{store}", suite))
    await first.wait_ready()
    await produce_events(broker.bootstrap_servers, topics.input, events)

    async with TopicReader(broker.bootstrap_servers, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= len(expected) // 2, 120, "half the results"
        )
        inflight_gauge = await first.metric("order_sync_inflight_deliveries")
        first.kill()
        # The event loop (and with it the simulators) stood still during the kill: this is the moment.
        logged_at_kill = {p: len(suite[p].log) for p in work.platforms}
        unanswered_at_kill = sum(1 for p in work.platforms for e in suite[p].log if e.status is None)
        recorded = outcomes_recorded(store)
        results_at_kill = len(reader.of(topics.success))

        second = connectors(connector_env(broker, topics, "crash", f"sqlite:///{store}", second_suite))
        await wait_results(reader, topics, expected, 120, "a result per delivery after the restart")
        await wait_all_committed(broker, topics, "crash")
        await reader.poll(0.5)
        second.assert_running()
        results = result_keys(reader.of(topics.success) + reader.of(topics.failure))
        outcomes = Counter(r.json()["outcome"] for r in reader.of(topics.success) + reader.of(topics.failure))

    before = work.sent(suite)
    after = work.sent(second_suite)
    # Requests still in socket buffers at the kill reach the first simulators afterwards.
    arrived_after_kill = len(before) - sum(logged_at_kill.values())

    def delivery_key(platform: Platform, order: str, version: int) -> tuple[str, str]:
        return (event_ids[(order, version)], platform.value)

    # In flight, as the connector counts it: sent, and its outcome not yet in the store.
    unrecorded = {delivery_key(*s.delivery) for s in before} - recorded
    repeated = {delivery_key(*s.delivery) for s in after} & {delivery_key(*s.delivery) for s in before}
    everything = before + after
    extra = len(everything) - len({s.delivery for s in everything})
    extra_results = sum(results.values()) - len(results)
    print(
        f"\ncrash: {len(events)} events x {len(work.platforms)} platforms, SIGKILL after {results_at_kill}"
        f" of {len(expected)} results (claim lease {CLAIM_LEASE_S:g}s)\n"
        f"  extra requests after restart: {extra} ({len(repeated)} deliveries repeated)\n"
        f"  in flight at the kill: {unanswered_at_kill} unanswered by the simulators"
        f" (+{arrived_after_kill} still in socket buffers), {len(unrecorded)} sent without a recorded"
        f" outcome in the store, order_sync_inflight_deliveries scraped just before: {inflight_gauge:.0f}\n"
        f"  repeated deliveries the simulators had already answered: "
        f"{sum(1 for s in before if delivery_key(*s.delivery) in repeated and s.status is not None)}\n"
        f"  results: {sum(results.values())} for {len(results)} deliveries ({extra_results} republished)"
    )
    assert set(results) == expected, "a delivery has no result"
    assert outcomes.keys() == {"applied"}
    assert {s.delivery for s in everything} == {
        (p, work.order_number(n), v) for n in range(ORDERS) for v in VERSIONS for p in work.platforms
    }
    assert not repeats(before) and not repeats(after), "one process sent a delivery twice"
    assert repeated <= unrecorded, "a delivery whose outcome was recorded was sent again"
    assert extra <= len(unrecorded)
    assert extra_results <= len(unrecorded)
    for (platform, order), versions in versions_in_arrival_order(everything).items():
        assert versions == sorted(versions), f"{platform.value} {order} saw versions out of order: {versions}"
