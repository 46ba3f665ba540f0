"""Pipelines: a platform that is down or slow holds back only its own deliveries, never the DLQ."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.resilience.conftest import (
    FAST_RECOVERY,
    PLATFORM_NAMES,
    EventProducer,
    StartConnector,
    connector_env,
    four_platform_event,
    per_platform,
)
from tests.support.kafka import TopicReader, Topics, wait_committed
from tests.support.process import ConnectorProcess

PLATFORMS = PLATFORM_NAMES
PIPELINES = ("intake", *PLATFORMS)
#: Test speed only: a held platform probes each second and retries within a second; no rate limit
#: (Sellercloud's own would make 600 deliveries take minutes), so only the outage holds it back.
FAST = per_platform({**FAST_RECOVERY, "RATE_LIMIT_RPS": "0"})


def _results_by_platform(reader: TopicReader, topic: str) -> Counter[str]:
    return Counter(r.json()["platform"] for r in reader.of(topic))


def _log_lines(path: Path, message: str, pipeline: str) -> list[float]:
    """Wall-clock times of the connector's log lines with `message` for `pipeline`."""
    times = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = orjson.loads(line)
        if entry.get("message") == message and entry.get("pipeline") == pipeline:
            times.append(datetime.fromisoformat(entry["ts"]).timestamp())
    return times


async def _lag_is_zero(connector: ConnectorProcess, pipelines: tuple[str, ...]) -> bool:
    lags = [await connector.metric("order_sync_consumer_lag", {"pipeline": p}) for p in pipelines]
    return lags == [0] * len(pipelines)


async def test_an_outage_holds_back_only_its_platform_and_never_the_dlq(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    """Sellercloud 503 for 20 s, MAX_INFLIGHT_EVENTS=100, 300 events and 50 malformed messages
    over 10 s: the other three platforms apply all theirs and the DLQ gets its 50 copies while it is
    still down; then Sellercloud applies all of its own; no failure; every group's lag 0."""
    outage_s, events, malformed, seconds = 20.0, 300, 50, 10
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        connector_env(
            suite, topics, bootstrap, tmp_path / "store.db", "iso", MAX_INFLIGHT_EVENTS="100", **FAST
        )
    )
    await connector.wait_ready()
    suite.set_faults(latency_s=0.02)
    outage_wall = time.time()
    outage_end = time.monotonic() + outage_s
    suite.sellercloud.faults.outage_for(outage_s)

    async with TopicReader(bootstrap, topics.success, topics.failure, topics.dlq) as reader:
        async with EventProducer(bootstrap, topics.input) as producer:
            per_second = events // seconds
            bad_per_second = malformed // seconds
            for second in range(seconds):
                batch = [four_platform_event(second * per_second + i) for i in range(per_second)]
                await producer.send_events(batch)
                await producer.send(
                    (b"bad", b'{"event_id": "broken-' + str(second * 10 + i).encode() + b'", ')
                    for i in range(bad_per_second)
                )
                await asyncio.sleep(1)

        others = ("vucustom", "elasticpath", "ventmere")

        def others_and_dlq_done(r: TopicReader) -> bool:
            applied = _results_by_platform(r, topics.success)
            return all(applied[p] >= events for p in others) and len(r.of(topics.dlq)) >= malformed

        await reader.wait_for(
            others_and_dlq_done,
            outage_end - time.monotonic(),
            "the other platforms' results and the DLQ copies during the outage",
            fail_on=topics.failure,
        )
        others_done = outage_s - (outage_end - time.monotonic())
        assert time.monotonic() < outage_end, "done only after the outage: the test proves nothing"
        assert _results_by_platform(reader, topics.success)["sellercloud"] == 0
        paused_during = await connector.metric("order_sync_partitions_paused", {"pipeline": "sellercloud"})
        others_paused = [
            await connector.metric("order_sync_partitions_paused", {"pipeline": p})
            for p in ("intake", *others)
        ]
        held = await connector.metric("order_sync_inflight_events", {"pipeline": "sellercloud"})
        parked = await connector.metric("order_sync_held_deliveries", {"platform": "sellercloud"})

        await reader.wait_for(
            lambda r: _results_by_platform(r, topics.success)["sellercloud"] >= events,
            outage_end - time.monotonic() + 90,
            "Sellercloud's results after the outage",
            fail_on=topics.failure,
        )
        caught_up = time.monotonic() - outage_end
        await wait_committed(bootstrap, "iso", topics.input, timeout_s=60)
        await connector.wait_until(lambda: _lag_is_zero(connector, PIPELINES), 30, "every pipeline's lag 0")
        await reader.poll(0.5)
        applied = _results_by_platform(reader, topics.success)
        dlq = reader.of(topics.dlq)

    assert reader.of(topics.failure) == []
    assert applied == {p: events for p in PLATFORMS}
    assert len(dlq) == malformed, "each bad message is copied to the DLQ exactly once"
    assert (
        len({int(r.headers["source.offset"]) + 1000 * int(r.headers["source.partition"]) for r in dlq}) == 50
    )
    # Its deliveries waited in the store (README "Isolation between connections"): even the held
    # platform's own pipeline went on reading, so nothing of it paused.
    assert parked > 0 and paused_during == 0 and others_paused == [0, 0, 0, 0]
    pauses = _log_lines(connector.log_path, "backpressure: fetching paused", "sellercloud")
    during = [t for t in pauses if outage_wall <= t < outage_wall + outage_s]
    assert len(during) <= 1, f"a held pipeline logged {len(during)} pauses during the outage"
    print(
        f"\nisolation: Sellercloud 503 for {outage_s:.0f}s, MAX_INFLIGHT_EVENTS 100, {events} events +"
        f" {malformed} malformed over {seconds}s: the other three applied {3 * events} deliveries and the DLQ"
        f" got {len(dlq)} copies {others_done:.1f}s into the outage (Sellercloud held {held:.0f} events in"
        f" memory and {parked:.0f} in the store, paused={paused_during:.0f}; other pipelines paused:"
        f" {others_paused}); Sellercloud applied all"
        f" {events} {caught_up:.1f}s after it; 0 failures; pause log lines for Sellercloud: {len(pauses)}"
        f" ({len(during)} during the outage); every group's lag 0"
    )


async def test_a_slow_platform_does_not_set_the_pace_of_the_others(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    """Elastic Path at 1 s per request with MAX_CONCURRENCY 4, the others at 20 ms, 300 events."""
    events = 300
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        connector_env(
            suite,
            topics,
            bootstrap,
            tmp_path / "store.db",
            "slow",
            PLATFORMS__ELASTICPATH__MAX_CONCURRENCY="4",
            **FAST,
        )
    )
    await connector.wait_ready()
    suite.set_faults(latency_s=0.02)
    suite.elasticpath.faults.update(latency_s=1.0)
    started = time.monotonic()
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        async with EventProducer(bootstrap, topics.input) as producer:
            await producer.send_events(four_platform_event(n) for n in range(events))
        others = ("vucustom", "sellercloud", "ventmere")
        await reader.wait_for(
            lambda r: all(_results_by_platform(r, topics.success)[p] >= events for p in others),
            120,
            "the fast platforms' results",
            fail_on=topics.failure,
        )
        others_done = time.monotonic() - started
        slow_done = _results_by_platform(reader, topics.success)["elasticpath"]
        # Let the slow one finish quickly, to show it loses nothing.
        suite.elasticpath.faults.update(latency_s=0.0)
        await reader.wait_for(
            lambda r: _results_by_platform(r, topics.success)["elasticpath"] >= events,
            120,
            "Elastic Path's results",
            fail_on=topics.failure,
        )
        await wait_committed(bootstrap, "slow", topics.input, timeout_s=60)
        await reader.poll(0.5)
        applied = _results_by_platform(reader, topics.success)
    assert slow_done < events / 4, f"Elastic Path completed {slow_done} of {events} meanwhile"
    assert applied == {p: events for p in PLATFORMS} and reader.of(topics.failure) == []
    print(
        f"\nslow platform: Elastic Path at 1 s, MAX_CONCURRENCY 4; the other three completed their"
        f" {3 * events} deliveries in {others_done:.1f}s while Elastic Path completed {slow_done} of {events}"
    )
