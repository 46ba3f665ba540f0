"""The README's "Guarantees and how they are kept", end to end: `order-sync run` processes,
the session broker, the simulators, real stores.

Stores: SQLite in the test's temp dir; the machine's Redis (a database of its own, keys deleted
after the test) and PostgreSQL (a fresh database per test, dropped after); and, for outages, a Redis
server the test starts, stops and restarts itself, so the shared one is never touched.

Every request a simulator logs is traced back to the delivery that sent it: each event carries its
version in a field every platform's body echoes (`customer_note` and `shipping_address.line2`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from connector.devtools.broker import EmbeddedBroker, free_port
from connector.devtools.simulators.requestlog import LoggedRequest
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.support.events import make_event
from tests.support.kafka import Record, TopicReader, Topics, wait_committed
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]

RUN = uuid.uuid4().hex[:8]
ACCOUNT = "1ac48942-405a-4841-a7d8-708f50dbe1ad"
#: Two platforms without token flows keep the heavy tests within budget; the pipeline test uses all four.
LIGHT = (Platform.VUCUSTOM, Platform.VENTMERE)
#: A claim held by a dead process may be taken over after this; short, so recovery is not a 60 s wait.
CLAIM_LEASE_S = 5.0
SESSION_TIMEOUT_MS = 3000

_SHARED_REDIS = os.environ.get("ORDER_SYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: A database of its own on the shared server: the connector's key prefix is fixed ("order-sync").
REDIS_URL = urlunsplit(urlsplit(_SHARED_REDIS)._replace(path="/11"))
POSTGRES_URL = os.environ.get("ORDER_SYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_databases = itertools.count()


# --- workloads and what the simulators saw -------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One order request a simulator received, as the delivery it belongs to."""

    platform: Platform
    order_number: str
    version: int
    at: float
    status: int | None

    @property
    def delivery(self) -> tuple[Platform, str, int]:
        return (self.platform, self.order_number, self.version)


def version_sent(platform: Platform, body: Any) -> int:
    if platform is Platform.VUCUSTOM:
        marker = body["order"]["note"]
    elif platform is Platform.SELLERCLOUD:
        marker = body["ShippingAddress"]["AddressLine2"]
    elif platform is Platform.ELASTICPATH:
        marker = body["data"]["shipping_address"]["line_2"]
    else:
        marker = body["customerNote"]
    return int(marker.removeprefix("v"))


@dataclass
class Workload:
    """Events for numbered orders of one test, and the way back from a request to its delivery."""

    platforms: tuple[Platform, ...] = tuple(Platform)
    tag: str = field(default_factory=lambda: f"gt-{RUN}-{uuid.uuid4().hex[:6]}")
    #: (platform, the order's id as that platform's simulator notes it) -> order number
    _ids: dict[tuple[Platform, str], str] = field(default_factory=dict)

    def order_number(self, n: int) -> str:
        return f"{self.tag}-{n}"

    def event(
        self, n: int, version: int, *, event_id: str | None = None, **order_fields: Any
    ) -> dict[str, Any]:
        order = self.order_number(n)
        ids = {
            Platform.VUCUSTOM: order,
            Platform.SELLERCLOUD: str(100_000 + n),
            Platform.ELASTICPATH: str(uuid.uuid5(uuid.NAMESPACE_URL, order)),
            Platform.VENTMERE: order,
        }
        targets = {
            Platform.VUCUSTOM: {"order_number": order},
            Platform.SELLERCLOUD: {"order_id": 100_000 + n, "company_id": 1},
            Platform.ELASTICPATH: {"order_id": ids[Platform.ELASTICPATH]},
            Platform.VENTMERE: {"order_id": order, "account_id": ACCOUNT},
        }
        for platform in self.platforms:
            self._ids[(platform, ids[platform])] = order
        event = make_event(
            order,
            version,
            {p.value: targets[p] for p in self.platforms},
            event_id=event_id or f"{self.tag}-{uuid.uuid4()}",
            **order_fields,
        )
        event["order"]["shipping_address"]["line2"] = f"v{version}"
        return event

    def sent(self, *suites: SimulatorSuite) -> list[Sent]:
        """Every order request the suites received, oldest first."""
        requests = []
        for suite in suites:
            for platform in self.platforms:
                requests.extend(self.as_sent(platform, entry) for entry in suite[platform].log)
        return sorted(requests, key=lambda s: s.at)

    def as_sent(self, platform: Platform, entry: LoggedRequest) -> Sent:
        # From the request itself: `entry.order_id` is noted only once the handler runs (after latency).
        if platform is Platform.VUCUSTOM:
            order_id = parse_qs(entry.query)["order_number"][0]
        else:
            order_id = unquote(entry.raw_path.rsplit("/", 1)[1])
        order = self._ids[(platform, order_id)]
        return Sent(platform, order, version_sent(platform, entry.body), entry.at, entry.status)


def deliveries_of(events: Iterable[dict[str, Any]], platforms: Iterable[Platform]) -> set[tuple[str, str]]:
    """(event_id, platform) of every delivery the events make."""
    return {(e["event_id"], p.value) for e in events for p in platforms}


def result_keys(records: Iterable[Record]) -> Counter[tuple[str, str]]:
    """How many results each (event_id, platform) got."""
    return Counter((r.json()["event_id"], r.json()["platform"]) for r in records)


def repeats(sent: Iterable[Sent]) -> Counter[tuple[Platform, str, int]]:
    """Deliveries requested more than once, with how many requests beyond the first."""
    counts = Counter(s.delivery for s in sent)
    return Counter({delivery: n - 1 for delivery, n in counts.items() if n > 1})


def versions_in_arrival_order(sent: Iterable[Sent]) -> dict[tuple[Platform, str], list[int]]:
    seen: dict[tuple[Platform, str], list[int]] = {}
    for s in sorted(sent, key=lambda s: s.at):
        seen.setdefault((s.platform, s.order_number), []).append(s.version)
    return seen


def connector_env(
    broker: EmbeddedBroker, topics: Topics, group: str, store_url: str, *suites: SimulatorSuite, **extra: str
) -> dict[str, str]:
    env = {
        **topics.env(group),
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "ORDER_SYNC_IDEMPOTENCY__URL": store_url,
        "ORDER_SYNC_IDEMPOTENCY__CLAIM_LEASE_S": str(CLAIM_LEASE_S),
        "ORDER_SYNC_SHUTDOWN_TIMEOUT_S": "20",
        # The broker does not act on LeaveGroup: a gone member's partitions move when its session expires.
        "ORDER_SYNC_KAFKA__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
    }
    for suite in suites:
        env.update(suite.connector_env())
    return {**env, **extra}


async def wait_all_committed(
    broker: EmbeddedBroker,
    topics: Topics,
    group: str,
    timeout_s: float = 60,
    platforms: Iterable[Platform] = tuple(Platform),
) -> dict[str, dict[int, int]]:
    """Wait until every pipeline's group (the intake's and each of `platforms`') committed every
    input partition to its end: all results (and DLQ copies) are then out."""
    names = [p.value for p in platforms]
    return await wait_committed(broker.bootstrap_servers, group, topics.input, timeout_s, platforms=names)


async def wait_results(
    reader: TopicReader, topics: Topics, wanted: set[tuple[str, str]], timeout_s: float, what: str
) -> None:
    """Until every wanted (event_id, platform) has a result on the success or failure topic."""

    def arrived(r: TopicReader) -> bool:
        return wanted <= set(result_keys(r.of(topics.success) + r.of(topics.failure)))

    await reader.wait_for(arrived, timeout_s, what)


async def delivery_states(
    store_url: str, deliveries: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The stored state (`claimed`, `done`, `reported`) of each (event_id, platform) the store knows.

    Read straight from the backend's tables or keys, as they stand (e.g. right after a process died).
    """
    wanted = set(deliveries)
    scheme = store_url.split(":", 1)[0]
    if scheme == "sqlite":
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            rows = list(db.execute("SELECT event_id, platform, state FROM deliveries"))
    elif scheme == "redis":
        client = aioredis.Redis.from_url(store_url)
        try:
            ordered = sorted(wanted)
            async with client.pipeline(transaction=False) as pipe:
                for event_id, platform in ordered:
                    pipe.hget(f"order-sync:delivery:{event_id}:{platform}", "state")
                states = await pipe.execute()
        finally:
            await client.aclose()
        rows = [(*key, state.decode()) for key, state in zip(ordered, states, strict=True) if state]
    else:
        conn = await asyncpg.connect(store_url, timeout=5)
        try:
            rows = [
                tuple(row)
                for row in await conn.fetch("SELECT event_id, platform, state FROM order_sync_deliveries")
            ]
        finally:
            await conn.close()
    return {
        (event_id, platform): state for event_id, platform, state in rows if (event_id, platform) in wanted
    }


# --- simulators ------------------------------------------------------------------------------------


@pytest.fixture
async def second_suite() -> AsyncIterator[SimulatorSuite]:
    """Another four simulators: with one suite per replica, each request is known by its sender."""
    simulators = SimulatorSuite()
    await simulators.start()
    try:
        yield simulators
    finally:
        await simulators.stop()


# --- stores ----------------------------------------------------------------------------------------


async def _redis_answers(url: str) -> str | None:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as exc:
        return f"no Redis at {url}: {exc}"
    finally:
        await client.aclose()
    return None


@contextlib.asynccontextmanager
async def _redis_database() -> AsyncIterator[str]:
    """The machine's Redis, database 11; every key this run's events made is deleted afterwards."""
    problem = await _redis_answers(REDIS_URL)
    if problem is not None:
        pytest.skip(problem)
    try:
        yield REDIS_URL
    finally:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            names = [name async for name in client.scan_iter(match=f"order-sync:*:gt-{RUN}-*", count=1000)]
            if names:
                await client.delete(*names)
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def _postgres_database() -> AsyncIterator[str]:
    """A database of its own on the machine's PostgreSQL, dropped afterwards."""
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=2)
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    name = f"order_sync_gt_{RUN}_{next(_databases)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["redis", "postgresql"])
async def shared_store(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The URL of a store replicas can share, isolated from everything else on its server."""
    database = _redis_database() if request.param == "redis" else _postgres_database()
    async with database as url:
        yield url


class RedisServer:
    """A redis-server child process of the test's own (the machine's command form), on a free port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    async def start(self, timeout_s: float = 10) -> None:
        """Start (or restart, same port and command) and wait until it answers."""
        self.process = await asyncio.to_thread(self._spawn)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while await _redis_answers(self.url) is not None:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}")
            if loop.time() > deadline:
                raise AssertionError(f"redis-server on port {self.port} did not answer in {timeout_s}s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM to the server this object started, and wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 10)

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    await server.start()
    try:
        yield server
    finally:
        server.kill()


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.started:.1f}s"
