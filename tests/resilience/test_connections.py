"""Connections: one account down or throttled holds back only itself (README "Isolation between
connections"), and nothing is lost or reordered by the wait, a restart or a hard kill."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import yaml

from connector.config import Settings
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
    produce_events_now,
)
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, wait_committed
from tests.support.process import ConnectorProcess, run_cli

SC, EP = Platform.SELLERCLOUD, Platform.ELASTICPATH
MAX_INFLIGHT = Settings.model_fields["max_inflight_events"].default
#: Sellercloud: `default`, one that goes down, one that is throttled; Elastic Path: two stores.
SC_CONNECTIONS = ("default", "down", "slow")
EP_CONNECTIONS = ("default", "west")
#: No rate limit (Sellercloud's own 3/s would make the test take minutes): the pace is the input's.
#: Only the two platforms the events target: fewer groups to join after each (re)start.
SETTINGS = {
    **per_platform({**FAST_RECOVERY, "RATE_LIMIT_RPS": "0"}, ("sellercloud", "elasticpath")),
    **per_platform({"ENABLED": "false"}, ("vucustom", "ventmere")),
}


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
    producer: EventProducer, events: list[dict[str, Any]], per_s: float, sent: dict[str, float]
) -> None:
    """`events` ten at a time at `per_s`; `sent` gets each event's id and when it was acknowledged."""
    started = time.monotonic()
    for i in range(0, len(events), 10):
        await producer.send_events(events[i : i + 10])
        now = time.monotonic()
        sent.update((e["event_id"], now) for e in events[i : i + 10])
        due = started + (i + 10) / per_s
        await asyncio.sleep(max(0.0, due - now))


def delivery_ref(event: dict[str, Any], platform: Platform) -> tuple[str, int]:
    """(the order's id as the platform's simulator notes it, the version): a request's delivery."""
    target = event["targets"][platform.value]
    return str(target["order_id"]), event["order"]["version"]


def applied_at(simulator: PlatformSimulator, platform: Platform) -> dict[tuple[str, int], float]:
    """When each (order id, version) was first applied by the account."""
    applied: dict[tuple[str, int], float] = {}
    for entry in simulator.log:
        if entry.method == "PUT" and entry.status == 200 and entry.order_id is not None:
            applied.setdefault((entry.order_id, version_sent(platform, entry.body)), entry.at)
    return applied


#: How long a delivery to a connection that is not down may wait after its event was produced (its
#: own throttle holds 2 s): far less than the outage, which a connection held back by the down one
#: would wait out.
NOT_HELD_S = 6.0
#: The pipelines' MAX_INFLIGHT_EVENTS in the test of a connection down.
WINDOW = 250


async def test_a_connection_down_or_throttled_holds_back_only_itself(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    accounts(suite)
    down = suite.account(SC, "down")
    slow = suite.account(SC, "slow")
    # Sellercloud's throttle shape on one account: after every 15 requests, 429 with its reset time 2 s on.
    slow.limit = ThrottleAfterEvery(15, 2.0)
    bootstrap = broker.bootstrap_servers
    # A pipeline window smaller than the default (1000) and a burst beyond it: less work than the
    # default's would take (parking it costs CPU), the same overflow.
    env = connector_env(
        suite, topics, bootstrap, tmp_path / "store.db", "conns", **SETTINGS, MAX_INFLIGHT_EVENTS=str(WINDOW)
    )
    connector = connectors(env)
    await connector.wait_ready()

    # The input's pace: a third of it for the throttled connection, within what its throttle lets by.
    baseline_s, outage_s, per_s = 6.0, 20.0, 12.0
    assert outage_s > 3 * NOT_HELD_S, "a connection held until the recovery would pass: proves nothing"
    orders = 60
    # Versions arrive throughout: each order gets a new version every `orders / per_s` seconds.
    total = int((baseline_s + outage_s + 3) * per_s)
    events = [an_event(i % orders, i // orders + 1) for i in range(total)]
    # Deliveries that pile up behind the outage: a burst for the down connection alone, more than
    # the platform pipeline's MAX_INFLIGHT_EVENTS, so that holding them in memory would stall it.
    burst = [an_event(3 * k + 1, 1, prefix="burst") for k in range(2 * WINDOW)]
    assert {e["targets"]["sellercloud"]["connection"] for e in burst} == {"down"}
    expected = len(events) + len(burst)

    started = time.monotonic()
    sent: dict[str, float] = {}
    rss: list[tuple[float, float]] = []

    async def outage() -> None:
        await asyncio.sleep(baseline_s)
        down.faults.outage_for(outage_s)
        await asyncio.sleep(5)
        async with EventProducer(bootstrap, topics.input) as producer:
            await producer.send_events(burst)
        # From the burst parked on, the backlog keeps growing with the paced input: RSS must not.
        await connector.wait_until(lambda: held(connector), 30, "the burst parked for the down connection")
        while time.monotonic() < started + baseline_s + outage_s - 1:
            rss.append((await held(connector), rss_mib(connector)))
            await asyncio.sleep(1.5)

    async def held(connector: ConnectorProcess) -> float:
        parked = await connector.metric("order_sync_held_deliveries", {"connection": "down"})
        return parked if parked >= len(burst) else 0

    async with EventProducer(bootstrap, topics.input) as producer:
        await asyncio.gather(produce_paced(producer, events, per_s, sent), outage())

    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= 2 * expected,
            180,
            "every delivery's result",
            fail_on=topics.failure,
        )
        outcomes = Counter(r.json()["outcome"] for r in reader.of(topics.success))
    await wait_committed(bootstrap, "conns", topics.input, platforms=("sellercloud", "elasticpath"))

    # Every delivery applied, none failed (fail_on above), each once.
    assert outcomes == {"applied": 2 * expected}
    outage_start = started + baseline_s
    recovered_at = outage_start + outage_s
    # The others were not held back: each of their deliveries was applied within NOT_HELD_S of its
    # event, also through the outage (the contract; their pace is the paced input's, so a connection
    # slowed below it falls behind and fails this too). A bound on the delay rather than a rate
    # compared between two windows: a loaded machine delays requests, it does not hold them.
    base_window = (started + 3, outage_start)
    outage_window = (outage_start + 3, recovered_at - 3)
    paces, delays = {}, {}
    for platform, name in [(SC, "default"), (SC, "slow"), (EP, "default"), (EP, "west")]:
        account = suite.account(platform, name)
        applied = applied_at(account, platform)
        mine = [e for e in events if e["targets"][platform.value]["connection"] == name]
        during = [e for e in mine if outage_start <= sent[e["event_id"]] < recovered_at]
        assert during, f"no event for {platform.value}/{name} during the outage"
        delay = {e["event_id"]: applied[delivery_ref(e, platform)] - sent[e["event_id"]] for e in during}
        delays[f"{platform.value}/{name}"] = max(delay.values())
        before = applied_between(account, *base_window) / (base_window[1] - base_window[0])
        pace = applied_between(account, *outage_window) / (outage_window[1] - outage_window[0])
        paces[f"{platform.value}/{name}"] = (before, pace)
    # The down connection's deliveries all came after it recovered, in order per order.
    assert applied_between(down, outage_window[0], recovered_at - 1) == 0
    for order, versions in applied_versions(down, SC).items():
        assert versions == sorted(versions), f"{order} applied out of order: {versions}"
    for name in SC_CONNECTIONS:
        for order, versions in applied_versions(suite.account(SC, name), SC).items():
            assert versions == sorted(set(versions)), f"sellercloud/{name} {order}: {versions}"
    growth = max(m for _, m in rss) - min(m for _, m in rss)
    print(
        f"\nduring a {outage_s:.0f} s outage of sellercloud/down, longest wait of the others' deliveries: "
        + ", ".join(f"{k} {d:.2f} s" for k, d in delays.items())
        + " (pace before / during, applied per second: "
        + ", ".join(f"{k} {b:.1f} / {d:.1f}" for k, (b, d) in paces.items())
        + f"); down connection: {len(applied_versions(down, SC))} orders applied after recovery"
        f" ({len(burst)} of them a burst parked during the outage);"
        f" held backlog {rss[0][0]:.0f} -> {rss[-1][0]:.0f} while RSS stayed within"
        f" {min(m for _, m in rss):.0f}-{max(m for _, m in rss):.0f} MiB ({len(rss)} samples)"
    )
    for name, delay_s in delays.items():
        assert delay_s <= NOT_HELD_S, f"{name}: a delivery waited {delay_s:.1f} s through the outage"
    assert len(rss) >= 3, f"{len(rss)} RSS samples: the test proves nothing"
    assert rss[-1][0] > rss[0][0], "the held backlog did not grow while RSS was sampled"
    assert growth < 10, f"RSS grew by {growth:.1f} MiB through the outage"


def log_messages(connector: ConnectorProcess, message: str) -> list[dict[str, Any]]:
    lines = []
    for line in connector.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and message in line:
            entry = orjson.loads(line)
            if entry.get("message", "").startswith(message):
                lines.append(entry)
    return lines


def write_connection(directory: Path, name: str, keys: dict[str, str], platform: Platform = SC) -> None:
    """As a Secret updated in place does: the new file appears whole, under the same name."""
    staged = directory / f".{name}.tmp"
    staged.write_text(yaml.safe_dump({"platform": platform.value, "name": name, **keys}))
    staged.replace(directory / f"{name}.yaml")


async def test_connections_come_change_and_go_by_file_without_a_restart(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    directory = tmp_path / "connections"
    directory.mkdir()
    env = connector_env(
        suite, topics, bootstrap, tmp_path / "store.db", "files", CONNECTIONS_DIR=str(directory)
    )
    eu = suite.add_account(SC, "eu")  # after connector_env: the connector learns of it from a file only
    connector = connectors(env)
    await connector.wait_ready()

    def sc_event(n: int, version: int = 1) -> dict[str, Any]:
        return make_event(f"file-{n}", version, {"sellercloud": {"order_id": 70_000 + n, "connection": "eu"}})

    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        # Not configured yet: unmappable, naming the connection.
        early = sc_event(0)
        await produce_events_now(bootstrap, topics.input, [early])
        await reader.wait_for(lambda r: len(r.of(topics.failure)) >= 1, 30, "the unmappable result")
        failure = reader.of(topics.failure)[0].json()
        assert (failure["outcome"], failure["connection"]) == ("unmappable", "eu")
        assert failure["error"]["category"] == "mapping" and "'eu'" in failure["error"]["message"]

        # A file dropped in: the connection is there within 10 s, without a restart.
        dropped = time.monotonic()
        write_connection(directory, "eu", suite.connection_settings(SC, "eu"))
        await connector.wait_until(
            lambda: log_messages(connector, "connection added"), 10, "the new connection"
        )
        added_after = time.monotonic() - dropped
        await produce_events_now(bootstrap, topics.input, [sc_event(n) for n in range(1, 21)])
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= 20, 30, "deliveries to the new connection"
        )

        # `replay` re-drives the delivery that found no connection: applied now.
        code, out = await run_cli({**connector.env}, "replay", "--from", "failures", "--yes")
        assert code == 0, out
        await reader.wait_for(lambda r: len(r.of(topics.success)) >= 21, 30, "the replayed delivery")
        replayed = [r.json() for r in reader.of(topics.success) if r.json()["order_number"] == "file-0"]
        assert [(r["outcome"], r["connection"]) for r in replayed] == [("applied", "eu")]

        # A rotated password, written to the file, is used for the next token; nothing fails.
        tokens_before = eu.log.token_requests
        write_connection(directory, "eu", {**suite.connection_settings(SC, "eu"), "password": "rotated-pw"})
        await connector.wait_until(
            lambda: log_messages(connector, "connection changed"), 10, "the rotated credential"
        )
        eu.password = "rotated-pw"  # the old one stops working on the platform now
        eu.tokens.expire_all()
        await produce_events_now(bootstrap, topics.input, [sc_event(n, 2) for n in range(1, 21)])
        await reader.wait_for(lambda r: len(r.of(topics.success)) >= 41, 30, "deliveries after the rotation")
        # The simulator issues a token for the new password only: a token taken with the old one
        # would have failed the deliveries (the failures below are the two expected ones only).
        token_requests = eu.log.token_requests - tokens_before
        assert token_requests >= 1

        # Removed: what README "Connections" says: later deliveries end unmappable (replayable).
        (directory / "eu.yaml").unlink()
        await connector.wait_until(lambda: log_messages(connector, "connection removed"), 10, "the removal")
        await produce_events_now(bootstrap, topics.input, [sc_event(99)])
        await reader.wait_for(lambda r: len(r.of(topics.failure)) >= 2, 30, "the delivery after the removal")
        failures = [r.json() for r in reader.of(topics.failure)]
    assert [(f["order_number"], f["outcome"]) for f in failures] == [
        ("file-0", "unmappable"),
        ("file-99", "unmappable"),
    ]
    print(
        f"\nconnection file: added after {added_after:.1f} s (scan every 2 s), credential rotated with"
        f" {token_requests} token requests on the new password, 0 failed;"
        " removed: later deliveries unmappable"
    )


async def _parked_all(connector: ConnectorProcess, count: int) -> bool:
    return await connector.metric("order_sync_held_deliveries", {"connection": "down"}) >= count


async def test_hard_kills_during_the_outage_and_the_drain_lose_nothing(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    down = suite.add_account(SC, "down")
    bootstrap = broker.bootstrap_servers
    concurrency = 4
    env = connector_env(
        suite,
        topics,
        bootstrap,
        tmp_path / "store.db",
        "kills",
        **SETTINGS,
        # A slow drain (4 at a time, 50 ms each), so that the second kill lands in the middle of it.
        PLATFORMS__SELLERCLOUD__CONNECTIONS__DOWN__MAX_CONCURRENCY=str(concurrency),
        # A killed process's claims are taken over once their lease lapses (60 s by default).
        IDEMPOTENCY__CLAIM_LEASE_S="5",
    )
    window = 2 * concurrency
    orders = 150
    events = [
        make_event(
            f"kill-{n}",
            version,
            {"sellercloud": {"order_id": 80_000 + n, "connection": "down" if n % 2 else "default"}},
        )
        for version in (1, 2, 3)
        for n in range(orders)
    ]
    for event in events:
        event["order"]["shipping_address"]["line2"] = f"v{event['order']['version']}"
    down.faults.outage_for(3600)
    first = connectors(env)
    await first.wait_ready()
    await produce_events_now(bootstrap, topics.input, events)
    # Every delivery to the down connection parked (half of them), the others applied.
    await first.wait_until(
        lambda: first.metric("order_sync_held_deliveries", {"connection": "down"}),
        30,
        "deliveries parked for the down connection",
    )
    await suite.sellercloud.log.wait_for(
        lambda log: sum(1 for e in log if e.method == "PUT" and e.status == 200) >= len(events) // 2, 60
    )
    # `history` shows the delivery waiting for its held connection, and the connection.
    await first.wait_until(
        lambda: _parked_all(first, len(events) // 2),
        60,
        "every delivery of the down connection parked",
    )
    code, shown = await run_cli({**first.env}, "history", "kill-1")
    assert code == 0, shown
    assert "sellercloud/down" in shown and "held: waiting in the store for its connection" in shown, shown
    first.kill()  # during the outage

    second = connectors(env)
    await second.wait_ready(60)
    await second.wait_until(
        lambda: second.metric("order_sync_held_deliveries", {"connection": "down"}),
        60,
        "the parked deliveries found again after the kill",
    )
    down.faults.reset()
    down.faults.update(latency_s=0.05)
    down.faults.outage_until = None
    await down.log.wait_for(
        lambda log: sum(1 for e in log if e.method == "PUT" and e.status == 200) >= len(events) // 6, 60
    )
    second.kill()  # while the held deliveries drain

    third = connectors(env)
    await third.wait_ready(60)
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len({x.json()["result_id"] for x in r.of(topics.success)}) >= len(events),
            120,
            "a result for every delivery",
            fail_on=topics.failure,
        )
        results = {x.json()["result_id"]: x.json()["outcome"] for x in reader.of(topics.success)}
    assert set(results) == {f"{e['event_id']}:sellercloud" for e in events}
    assert set(results.values()) == {"applied"}
    repeated = 0
    for name, account in (("default", suite.sellercloud), ("down", down)):
        versions = applied_versions(account, SC)
        assert len(versions) == orders // 2, f"{name}: {len(versions)} orders applied"
        for order, applied in versions.items():
            assert applied == sorted(applied), f"{name} {order} applied out of order: {applied}"
            assert set(applied) == {1, 2, 3}, f"{name} {order}: {applied}"
            repeated += len(applied) - 3
    print(
        f"\ntwo hard kills (during the outage, then while {len(events) // 2} parked deliveries drained):"
        f" every delivery has its one result, applied in order per order; {repeated} requests repeated"
        f" (bound: what was in flight, at most MAX_INFLIGHT_EVENTS and the drain's window of {window})"
    )
    assert repeated <= MAX_INFLIGHT + window
