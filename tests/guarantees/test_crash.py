"""A hard kill mid-stream (SIGKILL), then a restart on the same SQLite store: every delivery gets its
result, and the requests repeated are at most those that were in flight when the process died."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from connector.config import Settings
from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.guarantees.conftest import (
    CLAIM_LEASE_S,
    LIGHT,
    SESSION_TIMEOUT_MS,
    Sent,
    StartConnector,
    Workload,
    connector_env,
    deliveries_of,
    delivery_states,
    repeats,
    result_keys,
    versions_in_arrival_order,
    wait_all_committed,
    wait_results,
)
from tests.support.kafka import TopicReader, Topics, produce_events

ORDERS = 500
#: The connector's default MAX_INFLIGHT_EVENTS: the bound on each platform pipeline's repeats.
MAX_INFLIGHT = Settings.model_fields["max_inflight_events"].default
VERSIONS = (1, 2, 3, 4)


async def test_a_hard_kill_repeats_at_most_the_requests_in_flight(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    second_suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    work = Workload(LIGHT)
    events = [work.event(n, version) for version in VERSIONS for n in range(ORDERS)]
    event_ids = {(e["order"]["order_number"], e["order"]["version"]): e["event_id"] for e in events}
    expected = deliveries_of(events, work.platforms)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    for simulators in (suite, second_suite):
        simulators.set_faults(latency_s=0.02)

    def delivery(sent: Sent) -> tuple[str, str]:
        return (event_ids[(sent.order_number, sent.version)], sent.platform.value)

    # Each process gets its own simulators, so every request is known by the process that sent it.
    first = connectors(connector_env(broker, topics, "crash", store_url, suite))
    await first.wait_ready()
    started = time.monotonic()
    await produce_events(broker.bootstrap_servers, topics.input, events)

    async with TopicReader(broker.bootstrap_servers, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= len(expected) // 2, 120, "half the results"
        )
        gauge = await first.metric("order_sync_inflight_deliveries")
        first.kill()
        killed = time.monotonic()
        # The event loop, and the simulators in it, stood still during the kill: this is the moment.
        logged_at_kill = {p: len(suite[p].log) for p in work.platforms}
        unanswered = {
            delivery(work.as_sent(p, e)) for p in work.platforms for e in suite[p].log if e.status is None
        }
        states = await delivery_states(store_url, expected)
        results_at_kill = len(reader.of(topics.success))

        second = connectors(connector_env(broker, topics, "crash", store_url, second_suite))
        await wait_results(reader, topics, expected, 120, "a result per delivery after the restart")
        finished = time.monotonic()
        await wait_all_committed(broker, topics, "crash")
        await reader.poll(0.5)
        second.assert_running()
        results = result_keys(reader.of(topics.success) + reader.of(topics.failure))
        outcomes = Counter(r.json()["outcome"] for r in reader.of(topics.success) + reader.of(topics.failure))

    before, after = work.sent(suite), work.sent(second_suite)
    # Requests still in socket buffers at the kill reach the first simulators afterwards.
    unanswered |= {delivery(s) for s in before[sum(logged_at_kill.values()) :]}
    # In flight as the connector counts it: sent, and no outcome in the store yet (answered or not).
    unrecorded = {delivery(s) for s in before} - {k for k, state in states.items() if state != "claimed"}
    # Not reported in the store: their results may have been acknowledged by Kafka (outcome and report
    # are one write, after the acknowledgement), and are published again.
    unreported = {k for k, state in states.items() if state != "reported"}
    repeated = {delivery(s) for s in before} & {delivery(s) for s in after}
    per_platform = Counter(platform for _, platform in repeated)
    everything = before + after
    extra = len(everything) - len({s.delivery for s in everything})
    extra_results = sum(results.values()) - len(results)
    print(
        f"\ncrash: {len(events)} events x {len(work.platforms)} platforms at 20 ms, SIGKILL after"
        f" {results_at_kill} of {len(expected)} results ({killed - started:.1f}s); restarted, all results"
        f" {finished - killed:.1f}s later (claim lease {CLAIM_LEASE_S:g}s,"
        f" session timeout {SESSION_TIMEOUT_MS / 1000:g}s)\n"
        f"  extra requests: {extra} ({len(repeated)} deliveries sent by both processes)\n"
        f"  in flight at the kill: {len(unrecorded)} sent with no outcome in the store;"
        f" of them {len(unanswered)} unanswered by the simulators;"
        f" order_sync_inflight_deliveries just before: {gauge:.0f}\n"
        f"  repeated and unanswered at the kill: {len(repeated & unanswered)};"
        f" repeated though the platform had answered: {len(repeated - unanswered)}\n"
        f"  results: {sum(results.values())} for {len(results)} deliveries, {extra_results} published again"
        f" ({len(unreported)} claimed or done and not yet reported at the kill)\n"
        f"  repeated per platform: {dict(per_platform)} (in-flight limit {MAX_INFLIGHT} per pipeline)"
    )
    assert set(results) == expected, "a delivery has no result"
    assert outcomes.keys() == {"applied"}
    assert {s.delivery for s in everything} == {
        (p, work.order_number(n), v) for n in range(ORDERS) for v in VERSIONS for p in work.platforms
    }
    assert not repeats(before) and not repeats(after), "one process sent a delivery twice"
    assert repeated <= unrecorded, "a delivery whose outcome was recorded was sent again"
    assert extra <= len(unrecorded)
    assert all(n <= MAX_INFLIGHT for n in per_platform.values()), "more repeated than one pipeline holds"
    assert {k for k, n in results.items() if n > 1} <= unreported, "a reported delivery was published again"
    for (platform, order), versions in versions_in_arrival_order(everything).items():
        assert versions == sorted(versions), f"{platform.value} {order} saw versions out of order: {versions}"
