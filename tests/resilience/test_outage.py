"""A platform outage holds back only that platform's deliveries, and none of them fail."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.resilience.conftest import (
    FAST_RECOVERY,
    EventProducer,
    StartConnector,
    connector_env,
    four_platform_event,
    order_ref,
    per_platform,
    produce_events_now,
)
from tests.support.kafka import TopicReader, Topics, wait_committed

OUTAGE_S = 8.0
#: Events keep arriving during the first part of the outage, in waves.
WAVES = 11
WAVE_EVERY_S = 0.5
WAVE_SIZE = 5
WARM_UP = 10
OTHERS = ("vucustom", "elasticpath", "ventmere")


def _completed_at(result: dict[str, object]) -> float:
    return datetime.fromisoformat(str(result["completed_at"])).timestamp()


async def test_sellercloud_outage_fails_nothing_and_holds_back_no_other_platform(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        connector_env(
            suite,
            topics,
            bootstrap,
            tmp_path / "store.db",
            "outage",
            **per_platform(FAST_RECOVERY),
        )
    )
    await connector.wait_ready()
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        # Steady state first: every platform applied, Sellercloud's token is cached.
        await produce_events_now(bootstrap, topics.input, [four_platform_event(n) for n in range(WARM_UP)])
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= 4 * WARM_UP, 60, "warm-up", fail_on=topics.failure
        )

        outage_wall_start = time.time()
        outage_start = time.monotonic()
        suite.sellercloud.faults.outage_for(OUTAGE_S)
        outage_end = outage_start + OUTAGE_S
        outage_wall_end = outage_wall_start + OUTAGE_S

        async def waves() -> list[str]:
            produced: list[str] = []
            async with EventProducer(bootstrap, topics.input) as producer:
                for wave in range(WAVES):
                    batch = [four_platform_event(WARM_UP + wave * WAVE_SIZE + i) for i in range(WAVE_SIZE)]
                    await producer.send_events(batch)
                    produced.extend(e["order"]["order_number"] for e in batch)
                    await asyncio.sleep(WAVE_EVERY_S)
            return produced

        producing = asyncio.create_task(waves())

        async def circuit_open() -> bool:
            return await connector.metric("order_sync_circuit_open", {"platform": "sellercloud"}) == 1

        await connector.wait_until(circuit_open, OUTAGE_S, "Sellercloud's circuit to open")
        during = await producing
        assert time.monotonic() < outage_end, "the waves outlasted the outage; the test proves nothing"

        total = WARM_UP + len(during)
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= 4 * total,
            OUTAGE_S + 60,
            f"{4 * total} applied results",
            fail_on=topics.failure,
        )
        await wait_committed(bootstrap, "outage", topics.input)
        await reader.poll(0.5)
        assert reader.of(topics.failure) == []
        results = [r.json() for r in reader.of(topics.success)]

    assert await connector.metric("order_sync_circuit_open", {"platform": "sellercloud"}) == 0
    assert Counter((r["platform"], r["outcome"]) for r in results) == {
        (p, "applied"): total for p in ("vucustom", "sellercloud", "elasticpath", "ventmere")
    }
    by_platform = {p: {r["order_number"]: r for r in results if r["platform"] == p} for p in OTHERS}
    sellercloud = {r["order_number"]: r for r in results if r["platform"] == "sellercloud"}

    # Sellercloud: nothing got through during the outage; everything after it.
    log = list(suite.sellercloud.log)
    in_outage = [e for e in log if outage_start <= e.at < outage_end]
    refused = [e for e in log if e.status == 503]
    assert in_outage and all(e.status == 503 for e in in_outage)
    assert all(outage_start <= e.at < outage_end for e in refused)
    applied_after = [e for e in log if e.status == 200 and e.at >= outage_end]
    assert {order_ref(e) for e in applied_after} >= {str(20_000 + WARM_UP + i) for i in range(len(during))}
    assert all(_completed_at(sellercloud[order]) >= outage_wall_end - 0.01 for order in during)

    # The other three kept completing while it lasted: every event produced during the outage
    # reached them (requests answered 2xx, results published) before the outage was over.
    others_applied_during = {}
    last_other = 0.0
    for platform in OTHERS:
        simulator = getattr(suite, platform)
        applied = {order_ref(e): e.at for e in simulator.log if e.status is not None and e.status < 300}
        ids = {
            "vucustom": lambda order: str(10_000 + int(order.rsplit("-", 1)[1])),
            "elasticpath": lambda order: f"ep-{order}",
            "ventmere": lambda order: f"vm-{order}",
        }[platform]
        for order in during:
            assert outage_start <= applied[ids(order)] < outage_end, (platform, order)
            assert outage_wall_start <= _completed_at(by_platform[platform][order]) < outage_wall_end
        others_applied_during[platform] = len(during)
        last_other = max(last_other, *(applied[ids(order)] for order in during))

    attempts = [r["attempts"] for r in sellercloud.values()]
    last_refused = max(e.at for e in refused)
    first_after = min(e.at for e in applied_after)
    print(
        f"\noutage: Sellercloud 503 for {OUTAGE_S:.0f}s (first to last 503:"
        f" {last_refused - min(e.at for e in refused):.2f}s); {len(refused)} requests refused"
        f" (circuit reset 1s); {len(during)} events produced during it;"
        f" others applied during it: {others_applied_during}, the last {outage_end - last_other:.2f}s"
        " before it ended;"
        f" Sellercloud's first 200 {first_after - outage_end:.2f}s after the outage;"
        f" all {total} Sellercloud deliveries applied, attempts max {max(attempts)},"
        f" retries {await connector.metric('order_sync_retries_total', {'platform': 'sellercloud'}):.0f};"
        " 0 failure results"
    )


async def test_a_lone_delivery_waits_out_an_outage_instead_of_failing(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    """With no other traffic to open the circuit, one delivery's own failures must still not fail it."""
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        connector_env(
            suite,
            topics,
            bootstrap,
            tmp_path / "store.db",
            "lone",
            PLATFORMS__SELLERCLOUD__CIRCUIT_RESET_S="1",
            PLATFORMS__SELLERCLOUD__BACKOFF_BASE_S="0.05",
            PLATFORMS__SELLERCLOUD__BACKOFF_MAX_S="1",
        )
    )
    await connector.wait_ready()
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await produce_events_now(bootstrap, topics.input, [four_platform_event(0, prefix="warm")])
        await reader.wait_for(lambda r: len(r.of(topics.success)) >= 4, 60, "warm-up", fail_on=topics.failure)
        suite.sellercloud.faults.outage_for(OUTAGE_S)
        outage_end = time.monotonic() + OUTAGE_S
        await produce_events_now(bootstrap, topics.input, [four_platform_event(0, prefix="lone")])
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= 8,
            OUTAGE_S + 30,
            "the lone Sellercloud delivery",
            fail_on=topics.failure,
        )
        results = [r.json() for r in reader.of(topics.success) if r.json()["order_number"] == "lone-0"]
    lone = {r["platform"]: r for r in results}
    assert {r["outcome"] for r in results} == {"applied"} and len(lone) == 4
    refused = [e for e in suite.sellercloud.log if e.status == 503]
    applied = [e for e in suite.sellercloud.log if e.status == 200 and order_ref(e) == str(20_000)]
    assert len(applied) == 2 and applied[-1].at >= outage_end  # warm-0, then lone-0 after the outage
    print(
        f"\nlone delivery: {len(refused)} requests refused during an {OUTAGE_S:.0f}s outage"
        f" (MAX_ATTEMPTS 8, CIRCUIT_FAILURE_THRESHOLD 10); applied after it with"
        f" {lone['sellercloud']['attempts']} attempts"
    )
