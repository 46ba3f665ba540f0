"""Restarts (issue 27): every replica restarted at once, a rolling restart, a replica killed and
replaced. After each, deliveries flow again within the time plain aiokafka consumers need to rejoin on
the same broker in the same pattern, plus 10 s; and a group slow to form holds back only its own
pipeline (README "Restarts and group membership").

Each scenario measures, in the same test, plain aiokafka members (`tests/support/plain.py`: processes
in a fresh group on a fresh topic of as many partitions, with the connector's session and heartbeat)
and `order-sync run` processes: the time to the first delivery and to lag 0 (every result published)
after the disruption, from 200 events produced then (the rolling restart: once the last old replica
is gone, timed from its SIGTERM).

The embedded broker (Tansu 0.6) answers a join after half the session timeout and drops a member gone
without LeaveGroup when its session expires. Two faults of its coordinator shape the scenarios, and
plain consumers meet them as well (bench/README.md "Restarts"): a group whose leader sends LeaveGroup
shortly after another member did (replicas stopped together) keeps the departed leader and forms no
more until the broker happens to reload it, often minutes later; a group whose members are all static
never drops a static member that is gone. So the restart of every replica at once runs with
static membership under the same ids (as a StatefulSet does), and the rolling restart and the killed
replica with dynamic membership (as a Deployment, whose new pods have new names).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.resilience.conftest import (
    PLATFORM_NAMES,
    StartConnector,
    connector_env,
    four_platform_event,
    produce_events_now,
)
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, create_topics
from tests.support.plain import PlainMember, wait_owned
from tests.support.process import ConnectorProcess

#: ConnectorProcess's group settings, which the plain members share.
SESSION_MS = 6000
HEARTBEAT_MS = 500
PARTITIONS = 4
EVENTS = 200
SLACK_S = 10.0
#: Far beyond any figure here; a stalled group fails the test well within pytest's timeout.
FLOW_TIMEOUT_S = 60
#: The platforms `make_event` targets by default; the scenarios but one run only these.
LIGHT = ("vucustom", "ventmere")


@dataclass
class Figures:
    scenario: str
    plain_s: float
    first_s: float
    lag0_s: float

    def __str__(self) -> str:
        return (
            f"{self.scenario:<12} plain aiokafka rejoined in {self.plain_s:5.1f} s;"
            f" order-sync: first delivery {self.first_s:5.1f} s, lag 0 {self.lag0_s:5.1f} s"
        )


class Stalled(AssertionError):
    def __init__(
        self,
        name: str,
        timeout_s: float,
        first: float | None,
        done: set[tuple[str, str]],
        wanted: set[tuple[str, str]],
    ) -> None:
        super().__init__(f"{name}: {len(done)} of {len(wanted)} results after {timeout_s:.0f} s")
        self.first = first
        self.missing = {platform for _, platform in wanted - done}


class Setup:
    """One scenario's topics, store and connector settings, fresh, and its events."""

    def __init__(
        self,
        name: str,
        broker: EmbeddedBroker,
        suite: SimulatorSuite,
        tmp_path: Path,
        platforms: Sequence[str],
    ) -> None:
        self.name = name
        self.bootstrap = broker.bootstrap_servers
        self.suite = suite
        self.store = tmp_path / f"{name}.db"
        self.platforms = tuple(platforms)
        self.topics: Topics | None = None
        self.env: dict[str, str] = {}

    async def create(self) -> Setup:
        self.topics = await create_topics(self.bootstrap, PARTITIONS)
        suffix = self.topics.input.rsplit(".", 1)[1]
        others = {
            f"PLATFORMS__{p.upper()}__ENABLED": "false" for p in PLATFORM_NAMES if p not in self.platforms
        }
        self.env = connector_env(
            self.suite,
            self.topics,
            self.bootstrap,
            self.store,
            f"restarts-{self.name}-{suffix}",
            **others,
            **self.topics.control_topics(),
        )
        return self

    def events(self, prefix: str, count: int = EVENTS) -> list[dict[str, Any]]:
        tag = f"{prefix}-{uuid.uuid4().hex[:6]}"
        if self.platforms == LIGHT:
            return [make_event(f"{tag}-{n}", 1) for n in range(count)]
        return [four_platform_event(n, 1, tag) for n in range(count)]

    async def produce(self, events: list[dict[str, Any]]) -> None:
        assert self.topics is not None
        await produce_events_now(self.bootstrap, self.topics.input, events)

    def reader(self) -> TopicReader:
        assert self.topics is not None
        return TopicReader(self.bootstrap, self.topics.success, self.topics.failure)

    async def flow(
        self,
        reader: TopicReader,
        events: list[dict[str, Any]],
        t0: float,
        platforms: Sequence[str] | None = None,
        timeout_s: float = FLOW_TIMEOUT_S,
    ) -> tuple[float, float]:
        """Seconds from `t0` to the first result of `events`, and to the last (lag 0), on `platforms`
        (the setup's unless given)."""
        wanted = {(e["event_id"], p) for e in events for p in platforms or self.platforms}
        got: set[tuple[str, str]] = set()
        seen = 0
        first: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            for record in reader.records[seen:]:
                result = record.json()
                got.add((result["event_id"], result["platform"]))
            seen = len(reader.records)
            now = loop.time()
            done = got & wanted
            if done and first is None:
                first = now - t0
            if done == wanted:
                assert first is not None
                return first, now - t0
            if now - t0 > timeout_s:
                raise Stalled(self.name, timeout_s, first, done, wanted)
            await reader.poll(0.1)

    async def batch(self, reader: TopicReader) -> None:
        """A first batch worked through: the groups have committed offsets, the replicas are warm."""
        events = self.events("warm", 20)
        await self.produce(events)
        await self.flow(reader, events, asyncio.get_running_loop().time())

    def plain(self, topic: str, group: str, instance_id: str | None = None) -> PlainMember:
        return PlainMember(self.bootstrap, topic, group, SESSION_MS, HEARTBEAT_MS, instance_id)

    async def plain_topic(self) -> tuple[str, str]:
        """A fresh topic and group for the plain members."""
        topics = await create_topics(self.bootstrap, PARTITIONS)
        return topics.input, f"plain-{self.name}-{uuid.uuid4().hex[:8]}"


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


async def ready(*replicas: ConnectorProcess) -> None:
    await asyncio.gather(*(r.wait_ready(60) for r in replicas))


async def stopped(*replicas: ConnectorProcess) -> None:
    codes = await asyncio.gather(*(r.wait_exit(60) for r in replicas))
    assert codes == [0] * len(replicas), codes


# --- plain aiokafka, the same patterns ----------------------------------------------------------


async def plain_pair(
    setup: Setup, members: list[PlainMember], instance_ids: tuple[str | None, str | None] = (None, None)
) -> tuple[str, str, list[PlainMember]]:
    """Two plain members of a fresh group, once they own every partition."""
    topic, group = await setup.plain_topic()
    pair = [setup.plain(topic, group, instance_id) for instance_id in instance_ids]
    members += pair
    await asyncio.gather(*(m.start() for m in pair))
    await wait_owned(pair, PARTITIONS, 60, "the plain members' first join")
    return topic, group, pair


async def plain_all_at_once(setup: Setup, members: list[PlainMember]) -> float:
    topic, group, old = await plain_pair(setup, members, ("p0", "p1"))
    for member in old:
        member.terminate()
    await asyncio.gather(*(m.wait_exit() for m in old))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    new = [setup.plain(topic, group, f"p{i}") for i in range(2)]
    members += new
    await asyncio.gather(*(m.start() for m in new))
    await wait_owned(new, PARTITIONS, 120, "the restarted plain members")
    return loop.time() - t0


async def plain_rolling(setup: Setup, members: list[PlainMember]) -> float:
    topic, group, live = await plain_pair(setup, members)
    loop = asyncio.get_running_loop()
    t0 = 0.0
    for _ in range(2):
        new = await setup.plain(topic, group).start()
        members.append(new)
        live.append(new)
        await until(lambda: bool(new.owning), 60, "a new plain member's partitions")  # noqa: B023
        old = live.pop(0)
        t0 = loop.time()
        old.terminate()
        await old.wait_exit()
    await wait_owned(live, PARTITIONS, 120, "the plain members after the roll")
    return loop.time() - t0


async def plain_killed(setup: Setup, members: list[PlainMember]) -> float:
    topic, group, old = await plain_pair(setup, members)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    old[0].kill()
    replacement = await setup.plain(topic, group).start()
    members.append(replacement)
    await wait_owned([old[1], replacement], PARTITIONS, 120, "the plain members after the kill")
    return loop.time() - t0


@contextlib.asynccontextmanager
async def beside(
    plain: Callable[[Setup, list[PlainMember]], Awaitable[float]], setup: Setup
) -> AsyncIterator[asyncio.Task[float]]:
    """The plain members' pattern, run beside the connector's: its seconds to rejoin. Every member is
    stopped at the end (the pattern cancelled if the connector's part failed)."""
    members: list[PlainMember] = []

    async def run() -> float:
        try:
            return await plain(setup, members)
        finally:
            for member in members:
                member.kill()
            await asyncio.gather(*(m.wait_exit() for m in members), return_exceptions=True)

    task = asyncio.create_task(run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- order-sync ----------------------------------------------------------------------------------


async def all_at_once(setup: Setup, connectors: StartConnector) -> Figures:
    """Both replicas stopped (SIGTERM) and two started under the same static ids, every platform."""

    def replica(i: int) -> ConnectorProcess:
        return connectors({**setup.env, "ORDER_SYNC_KAFKA__GROUP_INSTANCE_ID": f"replica-{i}"})

    async with beside(plain_all_at_once, setup) as plain, setup.reader() as reader:
        old = [replica(0), replica(1)]
        await ready(*old)
        await setup.batch(reader)
        for replica_ in old:
            replica_.terminate()
        await stopped(*old)
        t0 = asyncio.get_running_loop().time()
        new = [replica(0), replica(1)]
        events = setup.events("all")
        await setup.produce(events)
        first, lag0 = await setup.flow(reader, events, t0)
        await ready(*new)
        return Figures("all at once", await plain, first, lag0)


async def rolling(setup: Setup, connectors: StartConnector) -> Figures:
    """A new replica started and ready, then an old one stopped (SIGTERM), twice; timed from the
    last SIGTERM, with the events produced once that replica is gone (a stopping replica finishes
    what it fetched: produced earlier, they would not wait for its partitions to move)."""
    async with beside(plain_rolling, setup) as plain, setup.reader() as reader:
        live = [connectors(setup.env), connectors(setup.env)]
        await ready(*live)
        await setup.batch(reader)
        loop = asyncio.get_running_loop()
        t0 = 0.0
        for _ in range(2):
            new = connectors(setup.env)
            live.append(new)
            await ready(new)
            old = live.pop(0)
            t0 = loop.time()
            old.terminate()
            await stopped(old)
        events = setup.events("rolling")
        await setup.produce(events)
        first, lag0 = await setup.flow(reader, events, t0)
        return Figures("rolling", await plain, first, lag0)


async def killed(setup: Setup, connectors: StartConnector) -> Figures:
    """One replica killed (SIGKILL) and a new one started in its place."""
    async with beside(plain_killed, setup) as plain, setup.reader() as reader:
        old = [connectors(setup.env), connectors(setup.env)]
        await ready(*old)
        await setup.batch(reader)
        t0 = asyncio.get_running_loop().time()
        old[0].kill()
        replacement = connectors(setup.env)
        events = setup.events("killed")
        await setup.produce(events)
        first, lag0 = await setup.flow(reader, events, t0)
        await ready(replacement, old[1])
        return Figures("one killed", await plain, first, lag0)


#: Each pattern, the platforms it runs and how: a test each, so that they run side by side.
PATTERNS = {
    "all": (PLATFORM_NAMES, all_at_once),
    "rolling": (LIGHT, rolling),
    "killed": (LIGHT, killed),
}


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_deliveries_flow_again_after_restarts_within_a_plain_consumers_rejoin_time(
    broker: EmbeddedBroker, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path, pattern: str
) -> None:
    platforms, scenario = PATTERNS[pattern]
    figure = await scenario(await Setup(pattern, broker, suite, tmp_path, platforms).create(), connectors)
    print(f"\nrestart (session timeout {SESSION_MS / 1000:g} s, {PARTITIONS} partitions, {EVENTS} events):")
    print(f"  {figure}")
    assert figure.first_s <= figure.plain_s + SLACK_S, figure
    assert figure.lag0_s <= figure.plain_s + SLACK_S, figure


class _SlowRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Takes `hold_s` to give partitions up, as a member draining slow work does."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.holding = asyncio.Event()
        #: When the hold began (the event loop's clock).
        self.held_at: float | None = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            self.held_at = asyncio.get_running_loop().time()
            self.holding.set()
            await asyncio.sleep(self.hold_s)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


#: How long the slow member takes to give its partitions up.
HOLD_S = 10.0


@dataclass
class SlowGroup:
    #: The slow member was holding, and no VU Custom result was out, when Ventmere's were all out.
    held: bool
    ventmere_s: float
    vucustom_s: float
    #: Seconds from the start to the end of the slow member's hold.
    hold_end_s: float

    def __str__(self) -> str:
        return (
            f"a member slow to give its partitions up ({HOLD_S:.0f} s, until {self.hold_end_s:.1f} s):"
            f" Ventmere's pipeline done after {self.ventmere_s:.1f} s, VU Custom's after"
            f" {self.vucustom_s:.1f} s"
        )


async def slow_group(setup: Setup, connectors: StartConnector) -> SlowGroup:
    """A member of VU Custom's group that takes HOLD_S to give its partitions up; one connector
    started and the events produced at once. The member is then stopped while it holds, without
    leaving (static, as a crash would), and VU Custom's pipeline takes its partitions once its
    session expires."""
    assert setup.topics is not None
    group = setup.env["ORDER_SYNC_KAFKA__GROUP_ID"]
    listener = _SlowRevoke(HOLD_S)
    slow = AIOKafkaConsumer(
        bootstrap_servers=setup.bootstrap,
        group_id=f"{group}.vucustom",
        group_instance_id="slow-member",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )
    await slow.start()
    slow.subscribe([setup.topics.input], listener=listener)

    async def poll() -> None:
        while True:
            await slow.getmany(timeout_ms=100)

    polling = asyncio.create_task(poll())
    try:
        await until(lambda: len(slow.assignment()) == PARTITIONS, 60, "the slow member's partitions")
        async with setup.reader() as reader:
            t0 = asyncio.get_running_loop().time()
            connector = connectors(setup.env)
            events = setup.events("slow")
            await setup.produce(events)
            _, ventmere_s = await setup.flow(reader, events, t0, ("ventmere",))
            held = listener.holding.is_set() and not any(
                r.json()["platform"] == "vucustom" for r in reader.records
            )
            # Stopped while it holds (the stop returns when the hold ends); static: no LeaveGroup.
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
            await slow.stop()
            _, vucustom_s = await setup.flow(reader, events, t0, ("vucustom",))
            await connector.wait_ready(30)
    finally:
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)
        await slow.stop()
    assert listener.held_at is not None, "the slow member never held its partitions"
    return SlowGroup(held, ventmere_s, vucustom_s, listener.held_at + HOLD_S - t0)


async def test_a_group_slow_to_rebalance_holds_back_only_its_own_pipeline(
    broker: EmbeddedBroker, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    """A member of VU Custom's group slow to give its partitions up holds back VU Custom's pipeline
    (on any broker: a rebalance waits for its members); Ventmere's delivers meanwhile."""
    figures = await slow_group(await Setup("slow", broker, suite, tmp_path, LIGHT).create(), connectors)
    print(f"\n{figures}")
    assert figures.held, "VU Custom's group was not held by the slow member: the test proves nothing"
    # An order of events, not a speed: Ventmere's pipeline was done while VU Custom's group still
    # waited for the slow member, and VU Custom's only after it.
    assert figures.ventmere_s < figures.hold_end_s, "Ventmere's pipeline waited for VU Custom's group"
    assert figures.vucustom_s > figures.hold_end_s
