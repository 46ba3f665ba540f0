"""Resilience tests: `order-sync run` subprocesses against the real broker and the platform simulators.

The simulators run inside the test process, so a test changes their faults while the connector
is sending, and reads their request logs (arrival times on the test process's monotonic clock).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from connector.devtools.simulators.requestlog import LoggedRequest
from connector.devtools.simulators.server import SimulatorSuite
from tests.support.events import make_event
from tests.support.kafka import Topics
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]

VENTMERE_ACCOUNT = "1ac48942-405a-4841-a7d8-708f50dbe1ad"
PLATFORM_NAMES = ("vucustom", "sellercloud", "elasticpath", "ventmere")


def connector_env(
    suite: SimulatorSuite,
    topics: Topics,
    bootstrap: str,
    store: Path,
    group: str,
    **settings: str,
) -> dict[str, str]:
    """All four platforms pointed at `suite`; `settings` are extra variables without the prefix."""
    return {
        **suite.connector_env(),
        **topics.env(group),
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{store}",
        **{f"ORDER_SYNC_{name}": value for name, value in settings.items()},
    }


#: Test speed only: probe a second after opening, retry within a second (MAX_ATTEMPTS stays 8).
FAST_RECOVERY = {"CIRCUIT_RESET_S": "1", "BACKOFF_BASE_S": "0.05", "BACKOFF_MAX_S": "1"}


def per_platform(settings: dict[str, str], platforms: Iterable[str] = PLATFORM_NAMES) -> dict[str, str]:
    """`settings` (keys without the platform prefix) for each of `platforms`, for `connector_env`."""
    return {
        f"PLATFORMS__{name.upper()}__{key}": value for name in platforms for key, value in settings.items()
    }


def four_platform_event(n: int, version: int = 1, prefix: str = "ord") -> dict[str, Any]:
    """An event for order `{prefix}-{n}` that targets every platform, each with its own id."""
    return make_event(
        f"{prefix}-{n}",
        version,
        {
            "vucustom": {"id": 10_000 + n},
            "sellercloud": {"order_id": 20_000 + n, "company_id": 12},
            "elasticpath": {"order_id": f"ep-{prefix}-{n}"},
            "ventmere": {"order_id": f"vm-{prefix}-{n}", "account_id": VENTMERE_ACCOUNT},
        },
    )


def order_ref(entry: LoggedRequest) -> str:
    """The order a logged request addressed, also for requests a fault answered before the handler ran."""
    if entry.order_id is not None:
        return entry.order_id
    query = parse_qs(entry.query)
    for name in ("id", "order_number"):
        if name in query:
            return query[name][0]
    return unquote(entry.raw_path.rsplit("/", 1)[-1])


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """The most timestamps in any closed interval of length `window_s` (sliding over every start)."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_right(ordered, start + window_s) - i for i, start in enumerate(ordered)), default=0
    )


class LoopLateness:
    """The most this process's event loop ran late while watched (`async with`).

    The simulators share this loop and stamp a request's arrival when its handler runs: on a busy
    machine a request can be stamped up to this much after it arrived, so requests sent apart may
    be stamped together. A window over arrival times widens by this much: a bound measured in the
    run, not guessed for every machine.
    """

    TICK_S = 0.005

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLateness:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.TICK_S)
            self.worst_s = max(self.worst_s, loop.time() - before - self.TICK_S)


class EventProducer:
    """A producer kept open across several batches (e.g. events arriving in waves)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        # Values may exceed the client's default 1 MiB request limit.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=False,
            linger_ms=5,
            max_request_size=8 * 1024 * 1024,
        )
        self._topic = topic

    async def __aenter__(self) -> EventProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, messages: Iterable[tuple[bytes | None, bytes | None]]) -> list[RecordMetadata]:
        """Publish (key, value) pairs in order and wait for every acknowledgement."""
        futures = [await self._producer.send(self._topic, value=value, key=key) for key, value in messages]
        return list(await asyncio.gather(*futures))

    async def send_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Publish events keyed by order number, as `order-sync produce` does."""
        await self.send((e["order"]["order_number"].encode(), orjson.dumps(e)) for e in events)


async def produce_raw(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]
) -> list[RecordMetadata]:
    async with EventProducer(bootstrap, topic) as producer:
        return await producer.send(messages)


async def produce_events_now(bootstrap: str, topic: str, events: Iterable[dict[str, Any]]) -> None:
    async with EventProducer(bootstrap, topic) as producer:
        await producer.send_events(events)
