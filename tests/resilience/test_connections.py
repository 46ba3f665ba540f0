"""Connections: one account down or throttled holds back only itself (README "Isolation between
connections"), and nothing is lost or reordered by the wait, a restart or a hard kill."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.base import PlatformSimulator
from connector.devtools.simulators.limits import ThrottleAfterEvery
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.guarantees.conftest import version_sent
from tests.resilience.conftest import (
    FAST_RECOVERY,
    EventProducer,
    StartConnector,
    connector_env,
    per_platform,
)
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, wait_committed
from tests.support.process import ConnectorProcess

SC, EP = Platform.SELLERCLOUD, Platform.ELASTICPATH
#: Sellercloud: `default`, one that goes down, one that is throttled; Elastic Path: two stores.
SC_CONNECTIONS = ("default", "down", "slow")
EP_CONNECTIONS = ("default", "west")
#: No rate limit (Sellercloud's own 3/s would make the test take minutes): the pace is the input's.
SETTINGS = per_platform({**FAST_RECOVERY, "RATE_LIMIT_RPS": "0"}, ("sellercloud", "elasticpath"))


def accounts(suite: SimulatorSuite) -> None:
    for name in SC_CONNECTIONS[1:]:
        suite.add_account(SC, name)
    for name in EP_CONNECTIONS[1:]:
        suite.add_account(EP, name)


def an_event(n: int, version: int, prefix: str = "ord") -> dict[str, Any]:
    """Order `n` lives on one Sellercloud connection and one Elastic Path store, by its number."""
    sc = SC_CONNECTIONS[n % len(SC_CONNECTIONS)]
    ep = EP_CONNECTIONS[n % len(EP_CONNECTIONS)]
    event = make_event(
        f"{prefix}-{n}",
        version,
        {
            "sellercloud": {"order_id": (60_000 if prefix == "burst" else 50_000) + n, "connection": sc},
            "elasticpath": {"order_id": f"ep-{prefix}-{n}", "connection": ep},
        },
    )
    # A field both platforms' bodies echo: which version a request carried.
    event["order"]["shipping_address"]["line2"] = f"v{version}"
    return event


def applied_versions(simulator: PlatformSimulator, platform: Platform) -> dict[str, list[int]]:
    """Per order, the versions the account accepted, in arrival order."""
    versions: dict[str, list[int]] = defaultdict(list)
    for entry in simulator.log:
        if entry.method != "PUT" or entry.status != 200 or entry.order_id is None:
            continue
        versions[entry.order_id].append(version_sent(platform, entry.body))
    return versions


def applied_between(simulator: PlatformSimulator, start: float, end: float) -> int:
    return sum(1 for e in simulator.log if e.method == "PUT" and e.status == 200 and start <= e.at < end)


def rss_mib(connector: ConnectorProcess) -> float:
    assert connector.process is not None
    for line in Path(f"/proc/{connector.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def produce_paced(
    producer: EventProducer, events: list[dict[str, Any]], per_s: float, stop: asyncio.Event | None = None
) -> None:
    started = time.monotonic()
    for i in range(0, len(events), 10):
        await producer.send_events(events[i : i + 10])
        due = started + (i + 10) / per_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def test_a_connection_down_or_throttled_holds_back_only_itself(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    accounts(suite)
    down = suite.account(SC, "down")
    slow = suite.account(SC, "slow")
    # Sellercloud's throttle shape on one account: after every 15 requests, 429 with its reset time 2 s on.
    slow.limit = ThrottleAfterEvery(15, 2.0)
    bootstrap = broker.bootstrap_servers
    env = connector_env(suite, topics, bootstrap, tmp_path / "store.db", "conns", **SETTINGS)
    connector = connectors(env)
    await connector.wait_ready()

    baseline_s, outage_s, per_s = 15.0, 60.0, 24.0
    orders = 60
    # Versions arrive throughout: each order gets a new version every `orders / per_s` seconds.
    total = int((baseline_s + outage_s + 5) * per_s)
    events = [an_event(i % orders, i // orders + 1) for i in range(total)]
    # Deliveries that pile up behind the outage: a burst for the down connection alone, more than
    # the platform pipeline's MAX_INFLIGHT_EVENTS, so that holding them in memory would stall it.
    burst = [an_event(3 * k + 1, 1, prefix="burst") for k in range(2_000)]
    assert {e["targets"]["sellercloud"]["connection"] for e in burst} == {"down"}
    expected = len(events) + len(burst)

    started = time.monotonic()
    rss: list[tuple[float, float]] = []

    async def outage() -> None:
        await asyncio.sleep(baseline_s)
        down.faults.outage_for(outage_s)
        await asyncio.sleep(5)
        async with EventProducer(bootstrap, topics.input) as producer:
            await producer.send_events(burst)
        while time.monotonic() < started + baseline_s + outage_s:
            rss.append((time.monotonic() - started, rss_mib(connector)))
            await asyncio.sleep(2.5)

    async with EventProducer(bootstrap, topics.input) as producer:
        await asyncio.gather(produce_paced(producer, events, per_s), outage())

    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= 2 * expected,
            180,
            "every delivery's result",
            fail_on=topics.failure,
        )
        outcomes = Counter(r.json()["outcome"] for r in reader.of(topics.success))
    await wait_committed(bootstrap, "conns", topics.input)

    # Every delivery applied, none failed (fail_on above), each once.
    assert outcomes == {"applied": 2 * expected}
    # The others kept their pace through the outage.
    base_window = (started + 3, started + baseline_s)
    outage_window = (started + baseline_s + 3, started + baseline_s + outage_s - 3)
    paces = {}
    for platform, name in [(SC, "default"), (SC, "slow"), (EP, "default"), (EP, "west")]:
        account = suite.account(platform, name)
        before = applied_between(account, *base_window) / (base_window[1] - base_window[0])
        during = applied_between(account, *outage_window) / (outage_window[1] - outage_window[0])
        paces[f"{platform.value}/{name}"] = (before, during)
    # The down connection's deliveries all came after it recovered, in order per order.
    recovered_at = started + baseline_s + outage_s
    assert applied_between(down, outage_window[0], recovered_at - 1) == 0
    for order, versions in applied_versions(down, SC).items():
        assert versions == sorted(versions), f"{order} applied out of order: {versions}"
    for name in SC_CONNECTIONS:
        for order, versions in applied_versions(suite.account(SC, name), SC).items():
            assert versions == sorted(set(versions)), f"sellercloud/{name} {order}: {versions}"
    growth = max(m for _, m in rss) - min(m for _, m in rss)
    print(
        "\npace before / during the outage (applied per second): "
        + ", ".join(f"{k} {b:.1f} / {d:.1f}" for k, (b, d) in paces.items())
        + f"; down connection: {len(applied_versions(down, SC))} orders applied after recovery"
        f" ({len(burst)} of them a burst parked during the outage);"
        f" RSS during the outage {min(m for _, m in rss):.0f}-{max(m for _, m in rss):.0f} MiB"
        f" ({len(rss)} samples)"
    )
    for name, (before, during) in paces.items():
        assert during >= 0.9 * before, f"{name} slowed from {before:.1f}/s to {during:.1f}/s"
    assert growth < 20, f"RSS grew by {growth:.1f} MiB through the outage"
