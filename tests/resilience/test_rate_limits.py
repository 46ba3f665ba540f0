"""Platforms that push back (429 with Retry-After) and the connector's own rate limit."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.requestlog import LoggedRequest
from connector.devtools.simulators.server import SimulatorSuite
from tests.resilience.conftest import (
    VENTMERE_ACCOUNT,
    LoopLateness,
    StartConnector,
    connector_env,
    max_in_window,
    order_ref,
    produce_events_now,
)
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics

RETRY_AFTER_S = 2
#: The bucket bounds when requests are sent; the simulator sees when they arrive, after a loopback
#: latency that varies (the first requests also open connections). Windows over arrival times get
#: this much slack (2.5 requests at 50 rps), plus how late the test's event loop, which the simulator
#: shares, ran meanwhile (LoopLateness).
ARRIVAL_JITTER_S = 0.05
#: Ventmere's request slots (MAX_CONCURRENCY), and how long its first requests take to answer.
CONCURRENCY = 32
STALL_S = 1.5


async def test_elasticpath_429s_are_retried_no_sooner_than_retry_after(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    events = 24
    suite.elasticpath.faults.update(rate_limit_every=5, retry_after_s=RETRY_AFTER_S)
    bootstrap = broker.bootstrap_servers
    connector = connectors(connector_env(suite, topics, bootstrap, tmp_path / "store.db", "throttled"))
    await connector.wait_ready()
    await produce_events_now(
        bootstrap,
        topics.input,
        [make_event(f"ep-{n}", 1, {"elasticpath": {"order_id": f"ep-order-{n}"}}) for n in range(events)],
    )
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= events, 120, f"{events} results", fail_on=topics.failure
        )
        results = [r.json() for r in reader.of(topics.success)]
    assert Counter(r["outcome"] for r in results) == {"applied": events}

    by_order: dict[str, list[LoggedRequest]] = defaultdict(list)
    for entry in suite.elasticpath.log:
        by_order[order_ref(entry)].append(entry)
    throttled = [e for e in suite.elasticpath.log if e.status == 429]
    assert throttled, "the simulator never answered 429"
    gaps = []
    for entry in throttled:
        requests = by_order[order_ref(entry)]
        following = requests[requests.index(entry) + 1 :]
        assert following, f"order {order_ref(entry)} was not retried after its 429"
        gap = following[0].at - entry.at
        assert gap >= RETRY_AFTER_S, f"order {order_ref(entry)} retried {gap:.3f}s after a 429"
        gaps.append(gap)
    assert all(requests[-1].status == 200 for requests in by_order.values())
    retried = {r["order_number"]: r["attempts"] for r in results if r["attempts"] > 1}
    print(
        f"\n429s: Elastic Path answered {len(throttled)} of {len(suite.elasticpath.log)} requests with 429"
        f" (Retry-After {RETRY_AFTER_S}s, every 5th request, {suite.elasticpath.log.token_requests} token"
        f" requests); shortest retry after a 429 {min(gaps):.3f}s, longest {max(gaps):.3f}s;"
        f" {len(retried)} deliveries needed a second attempt; 0 failures"
    )


async def test_rate_limit_bounds_requests_in_every_window(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    rate = 50
    events = 300
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        connector_env(
            suite,
            topics,
            bootstrap,
            tmp_path / "store.db",
            "limited",
            PLATFORMS__VENTMERE__RATE_LIMIT_RPS=str(rate),
            PLATFORMS__VENTMERE__MAX_CONCURRENCY=str(CONCURRENCY),
        )
    )
    await connector.wait_ready()
    # The platform stalls at first: every request slot fills with a slow request. Requests queued
    # meanwhile must not leave together once it answers again, beyond what the bucket allows.
    suite.ventmere.faults.update(latency_s=STALL_S)
    async with LoopLateness() as lateness:
        await produce_events_now(
            bootstrap,
            topics.input,
            # Only Ventmere: the simulators share the test's event loop, and traffic to another
            # platform would only add noise to the arrival times measured here.
            [
                make_event(
                    f"rl-{n}", 1, {"ventmere": {"order_id": f"rl-{n}", "account_id": VENTMERE_ACCOUNT}}
                )
                for n in range(events)
            ],
        )
        await suite.ventmere.log.wait_for(lambda log: len(log) >= CONCURRENCY, 30)
        suite.ventmere.faults.update(latency_s=0.0)
        async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
            await reader.wait_for(
                lambda r: len(r.of(topics.success)) >= events,
                120,
                f"{events} results",
                fail_on=topics.failure,
            )
    arrivals = [e.at for e in suite.ventmere.log]
    assert len(arrivals) == events
    burst = rate  # the bucket's default burst
    worst = {}
    excess = 0.0
    jitter_s = ARRIVAL_JITTER_S + lateness.worst_s
    for window_s in (0.25, 0.5, 1.0, 2.0, 3.0):
        seen = max_in_window(arrivals, window_s)
        bound = burst + rate * (window_s + jitter_s)
        assert seen <= bound, f"{seen} requests within {window_s}s; the bucket allows {bound:.0f}"
        worst[window_s] = seen
        excess = max(excess, seen - (burst + rate * window_s))
    span = max(arrivals) - min(arrivals)
    print(
        f"\nrate limit {rate} rps (burst {burst}): {events} Ventmere requests over {span:.2f}s,"
        f" the first {CONCURRENCY} answered after {STALL_S}s;"
        f" max in any window {worst} (bound burst + rate*T, most over it {excess:+.1f});"
        f" average {events / span:.1f} rps; arrival stamps up to {jitter_s * 1000:.0f} ms late"
        f" ({lateness.worst_s * 1000:.0f} ms of it this process's event loop running late)"
    )
