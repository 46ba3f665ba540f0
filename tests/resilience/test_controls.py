"""Operator controls (README "Operator controls"): pause and resume a connection across replicas,
`--until`, bad control records, and `order-sync status`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.guarantees.conftest import version_sent
from tests.resilience.conftest import EventProducer, StartConnector, connector_env
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, produce
from tests.support.process import run_cli

EP = Platform.ELASTICPATH
#: Status every second in tests: a replica is gone after 3 s of silence.
FAST_STATUS = {
    "KAFKA__STATUS_INTERVAL_S": "1",
    "PLATFORMS__ELASTICPATH__RATE_LIMIT_RPS": "0",
    # Only the platform the events target: fewer groups to join after each (re)start.
    **{f"PLATFORMS__{p.name}__ENABLED": "false" for p in Platform if p is not Platform.ELASTICPATH},
}


#: How long the pause is watched before the replicas restart.
OBSERVED_S = 8.0
#: Longest a delivery to the connection that is not paused may take from its event's production:
#: far less than the pause, which a connection held back by the paused one would wait out.
NOT_HELD_S = 4.0


def an_event(n: int, version: int) -> dict[str, Any]:
    connection = "eu" if n % 2 else "default"
    event = make_event(
        f"ctl-{n}", version, {"elasticpath": {"order_id": f"ep-ctl-{n}", "connection": connection}}
    )
    event["order"]["shipping_address"]["line2"] = f"v{version}"
    return event


def puts_after(suite: SimulatorSuite, account: str, moment: float) -> int:
    return sum(1 for e in suite.account(EP, account).log if e.method == "PUT" and e.at > moment)


def puts_between(suite: SimulatorSuite, account: str, start: float, end: float) -> int:
    return sum(1 for e in suite.account(EP, account).log if e.method == "PUT" and start <= e.at < end)


def first_put_at(suite: SimulatorSuite, account: str) -> dict[tuple[str, int], float]:
    """When each (order id, version) was first sent to the account."""
    sent: dict[tuple[str, int], float] = {}
    for entry in suite.account(EP, account).log:
        if entry.method == "PUT" and entry.order_id is not None:
            sent.setdefault((entry.order_id, version_sent(EP, entry.body)), entry.at)
    return sent


def applied_in_order(suite: SimulatorSuite, account: str) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = {}
    for entry in suite.account(EP, account).log:
        if entry.method == "PUT" and entry.status == 200 and entry.order_id is not None:
            versions.setdefault(entry.order_id, []).append(version_sent(EP, entry.body))
    return versions


async def statuses(env: dict[str, str]) -> tuple[float, list[dict[str, Any]]]:
    started = time.monotonic()
    code, out = await run_cli(env, "status", "--json")
    took = time.monotonic() - started
    assert code == 0, out
    return took, orjson.loads(out)["replicas"]


async def test_a_paused_connection_holds_on_every_replica_through_restarts_and_resumes(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    suite.add_account(EP, "eu")
    bootstrap = broker.bootstrap_servers
    env = connector_env(
        suite,
        topics,
        bootstrap,
        tmp_path / "store.db",
        "ctl",
        **FAST_STATUS,
        **topics.control_topics(),
        # The killed replica's claims are taken over once their lease lapses (60 s by default).
        IDEMPOTENCY__CLAIM_LEASE_S="5",
    )
    first, second = connectors(env), connectors(env)
    await asyncio.gather(first.wait_ready(60), second.wait_ready(60))
    orders, versions = 100, 10
    keys = [(n, v) for v in range(1, versions + 1) for n in range(orders)]
    events = [an_event(n, v) for n, v in keys]

    #: (order, version) -> when it was acknowledged by the broker.
    sent: dict[tuple[int, int], float] = {}

    async def flow() -> None:
        async with EventProducer(bootstrap, topics.input) as producer:
            for i in range(0, len(events), 25):
                await producer.send_events(events[i : i + 25])
                now = time.monotonic()
                sent.update(((n, v), now) for n, v in keys[i : i + 25])
                await asyncio.sleep(0.5)

    flowing = asyncio.create_task(flow())
    await suite.account(EP, "eu").log.wait_for(lambda log: len(log) > 50, 30)
    code, out = await run_cli(first.env, "pause", "elasticpath/eu", "--reason", "mapping bug", "--by", "ops")
    assert code == 0, out
    paused_at = time.monotonic()
    await asyncio.sleep(OBSERVED_S)
    # Within 2 s no request reaches the paused connection, from either replica; the other is not
    # held: each of its deliveries produced meanwhile is made within NOT_HELD_S (its pace is the
    # paced input's; a bound on the delay, not a rate, which a loaded machine would bend).
    assert puts_after(suite, "eu", paused_at + 2) == 0
    made = first_put_at(suite, "default")
    waits = [
        made.get((f"ep-ctl-{n}", v), float("inf")) - at
        for (n, v), at in sent.items()
        if n % 2 == 0 and paused_at <= at <= paused_at + OBSERVED_S - NOT_HELD_S
    ]
    assert len(waits) >= 50, f"{len(waits)} deliveries to elasticpath/default watched: proves nothing"
    assert max(waits) <= NOT_HELD_S, f"elasticpath/default held {max(waits):.1f} s during the pause"
    before = puts_between(suite, "default", paused_at - 3, paused_at) / 3
    during = puts_between(suite, "default", paused_at + 2, paused_at + OBSERVED_S) / (OBSERVED_S - 2)

    took, replicas = await statuses(first.env)
    up = [r for r in replicas if not r["gone"]]
    assert len(up) == 2, replicas
    held = {(c["platform"], c["connection"]): c for r in up for c in r["connections"] if c.get("paused")}
    assert held[("elasticpath", "eu")]["paused"]["reason"] == "mapping bug"
    assert sum(c["held_backlog"] for r in up for c in r["connections"] if c["connection"] == "eu") > 0
    code, table = await run_cli(first.env, "status")
    assert code == 0 and "elasticpath/eu" in table and "mapping bug" in table, table

    # Both replicas restarted while the pause holds: it still holds.
    first.terminate()
    second.terminate()
    await asyncio.gather(first.wait_exit(), second.wait_exit())
    restarted_at = time.monotonic()
    third, fourth = connectors(env), connectors(env)
    await asyncio.gather(third.wait_ready(60), fourth.wait_ready(60))
    await asyncio.sleep(3)
    assert puts_after(suite, "eu", restarted_at) == 0

    # A replica killed is shown as gone within 3 intervals.
    _, document = await fourth.get("/status")
    killed = orjson.loads(document)["replica"]
    assert not next(r for r in (await statuses(third.env))[1] if r["replica"] == killed)["gone"]
    fourth.kill()
    killed_at = time.monotonic()

    async def gone() -> bool:
        _, now = await statuses(third.env)
        return any(r["gone"] for r in now if r["replica"] == killed)

    await third.wait_until(gone, 10, "the killed replica shown as gone")
    gone_after = time.monotonic() - killed_at
    await flowing
    # Resumed once every event is in (held for the paused connection since the pause).
    code, out = await run_cli(third.env, "resume", "elasticpath/eu", "--by", "ops")
    assert code == 0, out
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len({x.json()["result_id"] for x in r.of(topics.success)}) >= len(events),
            120,
            "every delivery's result",
            fail_on=topics.failure,
        )
    for order, applied in applied_in_order(suite, "eu").items():
        assert applied == sorted(applied), f"{order} applied out of order: {applied}"
    print(
        f"\npause: none of {len(events)} events' requests reached elasticpath/eu 2 s after the pause on"
        f" either replica; elasticpath/default {before:.1f}/s before, {during:.1f}/s during, each of its"
        f" deliveries made within {max(waits):.2f} s of its event;"
        f" status answered in {took:.2f} s; a killed replica shown gone after"
        f" {gone_after:.1f} s; held changes applied in order after the resume, 0 failed"
    )


async def test_a_pause_until_ends_by_itself_and_bad_control_records_are_ignored(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    suite.add_account(EP, "eu")
    bootstrap = broker.bootstrap_servers
    env = connector_env(
        suite, topics, bootstrap, tmp_path / "store.db", "until", **FAST_STATUS, **topics.control_topics()
    )
    connector = connectors(env)
    await connector.wait_ready()
    control = topics.control_topics()["KAFKA__CONTROL_TOPIC"]
    await produce(
        bootstrap,
        control,
        [
            (b"elasticpath/eu", b"{not json"),
            (
                b"nowhere",
                orjson.dumps(
                    {
                        "action": "pause",
                        "target": "nowhere",
                        "by": "x",
                        "at": "2026-01-01T00:00:00Z",
                        "reason": "r",
                    }
                ),
            ),
        ],
    )
    until = datetime.now(UTC) + timedelta(seconds=6)
    # The pause's end on this process's monotonic clock (the simulators log request times on it).
    ends_at = time.monotonic() + (until - datetime.now(UTC)).total_seconds()
    code, out = await run_cli(
        connector.env, "pause", "elasticpath/eu", "--reason", "maintenance", "--until", until.isoformat()
    )
    assert code == 0, out
    await asyncio.sleep(1.0)
    await produce(bootstrap, topics.input, [(b"ctl-1", orjson.dumps(an_event(1, 1)))])
    assert time.monotonic() < ends_at - 0.5, "produced after the pause ended: the test proves nothing"
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(lambda r: len(r.of(topics.success)) >= 1, 30, "the delivery after the pause")
    first_put = min(e.at for e in suite.account(EP, "eu").log if e.method == "PUT")
    # Not one request before the --until (its clock read twice: a few milliseconds' slack).
    assert first_put >= ends_at - 0.05, f"sent {ends_at - first_put:.2f} s before the pause ended"
    log = connector.log_path.read_text()
    assert "control record ignored" in log and "nowhere" in log
    assert "pause ended" in log
    connector.assert_running()
