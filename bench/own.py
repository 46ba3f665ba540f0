"""The connector's own work per event, in one process with no network.

Each input message goes through the real stages of the intake and of the four platform pipelines
(the screen: decode, fingerprint and conflict check; per platform: ordering lane, request mapping,
claim, outcome recorded, result built and encoded, metrics) with the real store batcher and a real
store. Nothing else: the dispatcher answers every request at once (applied) and the publisher
acknowledges every result at once, so neither HTTP nor Kafka is in the figure. Run on a quiet
process, it moves far less from run to run than the end-to-end scenarios of `bench.run`: a yardstick
for changes to the delivery path (bench/README.md, "The connector's own work").

    python -m bench.own --events 5000 [--store sqlite|memory] [--connections N] [--profile]

Prints CPU per event and per delivery (process time over the run, both threads); `--profile` adds
cProfile's top functions by own time (cProfile roughly doubles the time it measures).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from bench.events import PLATFORM_COUNT, bench_events, connection_name
from connector.commands import eventloop
from connector.commands.run import tune_gc
from connector.config import PlatformsSettings
from connector.delivery.connections import ConnectionRegistry
from connector.delivery.dispatcher import DeliveryReport, PlatformDispatcher, Turn
from connector.delivery.gates import Gates
from connector.delivery.parked import ParkedStore
from connector.delivery.runner import DeliveryRunner
from connector.devtools.simulators.server import SimulatorSuite
from connector.kafka.publisher import Publisher
from connector.models import Outcome, Platform, Source
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor
from connector.pipeline.delivery import DeliveryStage
from connector.pipeline.intake import IntakeStage
from connector.pipeline.pipeline import Stage
from connector.pipeline.pipelines import JUDGED_WINDOWS
from connector.pipeline.screening import MessageScreen
from connector.platforms.http import PlatformRequest
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport
from connector.policies.circuit import CircuitBreaker
from connector.stores import IdempotencyStore
from connector.stores.batching import EventChecks
from connector.stores.guard import StoreGuard
from connector.stores.memory import MemoryStore
from connector.stores.sqlite import SqliteStore

TOPIC = "orders.changed"
#: Messages taken before waiting for their work: half the default MAX_INFLIGHT_EVENTS, about what a
#: pipeline holds while it fetches; the screen keeps as many decoded messages, as `order-sync run` does.
WINDOW = 500


class _Applied:
    """Stands in for a connection's dispatcher: the adapter maps, nothing is sent, all is applied."""

    #: Never throttled, its circuit closed, and a window no backlog fills: every delivery goes from
    #: memory, and asks its gate before its request as the real dispatcher does.
    throttled_for_s = 0.0
    window = 1 << 30

    def __init__(self, platform: Platform, settings: PlatformsSettings) -> None:
        self.adapter = build_adapter(platform, settings.get(platform), Transport(), Redactor())
        self.circuit = CircuitBreaker.from_settings(settings.get(platform))

    def ready(self) -> bool:
        return True

    async def wait_ready(self) -> None:
        return None

    async def deliver(self, request: PlatformRequest, turn: Turn) -> DeliveryReport:
        me = cast(PlatformDispatcher, self)
        await turn.clear(me)
        if turn.superseded():
            return DeliveryReport(Outcome.SUPERSEDED, None, 0, None)
        while not turn.may_send(me):  # asked again under the slot, as the dispatcher does
            await turn.clear(me)
        return DeliveryReport(Outcome.APPLIED, 200, 1, None)


class _Acknowledged:
    """Stands in for the Kafka publisher: every record is acknowledged at once."""

    def __init__(self) -> None:
        self.results = 0

    async def publish_result(self, result: Any, encoded: bytes, source: Source, trace: Any = None) -> None:
        self.results += 1

    async def publish_dlq(self, *args: Any, **kwargs: Any) -> None:
        return None


def _platform_settings() -> PlatformsSettings:
    """The simulators' settings (credentials included); no request ever reaches the address."""
    simulators = SimulatorSuite().simulators
    return PlatformsSettings.model_validate(
        {p.value: s.connector_settings(f"http://127.0.0.1:9{s.mount}") for p, s in simulators.items()}
    )


async def own_work(
    events: int,
    store: IdempotencyStore,
    profile: cProfile.Profile | None,
    connections: int = 1,
    *,
    tuned_gc: bool = False,
) -> tuple[float, int]:
    """CPU seconds for `events` events through the intake and the four platform stages, and the
    results published; with `connections`, spread over that many connections per platform."""
    settings = _platform_settings()
    metrics = Metrics()
    await store.open()
    guard = StoreGuard(store, metrics)
    # Stand-ins with the same methods as the real parts (duck-typed, as the unit tests' are).
    acknowledged = _Acknowledged()
    publisher = cast(Publisher, acknowledged)
    dispatchers = {
        (p, connection_name(n, connections)): cast(PlatformDispatcher, _Applied(p, settings))
        for p in Platform
        for n in range(connections)
    }
    registry = ConnectionRegistry.of(dispatchers)
    runner = DeliveryRunner(registry, guard, publisher, metrics, owner="own", claim_lease_s=30)
    screen = MessageScreen(
        EventChecks(guard).check_event, 1_048_576, capacity=WINDOW, judged_span=JUDGED_WINDOWS * 2 * WINDOW
    )
    parked = ParkedStore(guard)
    stages: list[Stage] = [
        IntakeStage(screen, publisher, metrics),
        *(
            DeliveryStage(p, screen, runner, Gates(p, runner, parked, None, metrics, 2 * WINDOW), metrics)
            for p in Platform
        ),
    ]
    tp = TopicPartition(TOPIC, 0)
    for stage in stages:
        await stage.assigned([tp])
    records = [
        ConsumerRecord(
            TOPIC, 0, offset, 0, 0, event.key, event.value, None, len(event.key), len(event.value), []
        )
        for offset, event in enumerate(bench_events(events, seed=11, connections=connections))
    ]
    loop = asyncio.get_running_loop()
    if tuned_gc:
        # As `order-sync run` does once started: what start-up built is never walked again.
        tune_gc()
    started = time.process_time()
    if profile is not None:
        profile.enable()
    for first in range(0, len(records), WINDOW):
        work: list[asyncio.Future[None]] = []
        for record in records[first : first + WINDOW]:
            for stage in stages:
                taken = stage.take(record)
                if taken is not None:
                    work.append(taken if isinstance(taken, asyncio.Future) else loop.create_task(taken))
        await asyncio.wait(work)
    if profile is not None:
        profile.disable()
    cpu = time.process_time() - started
    for stage in stages:
        await stage.close()
    await screen.close()
    await store.close()
    return cpu, acknowledged.results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--connections", type=int, default=1, help="Connections per platform.")
    parser.add_argument(
        "--gc",
        choices=("default", "tuned"),
        default="default",
        help="CPython's collector as it comes, or tuned as `order-sync run` tunes it after start-up.",
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory() as workdir:
        store: IdempotencyStore = (
            SqliteStore(Path(workdir) / "own.db") if args.store == "sqlite" else MemoryStore()
        )
        work = own_work(args.events, store, profile, args.connections, tuned_gc=args.gc == "tuned")
        cpu, _ = eventloop.run(work, "uvloop")
    deliveries = args.events * PLATFORM_COUNT
    print(
        f"{args.events} events, {args.store} store, {args.connections} connections per platform: "
        f"{cpu / args.events * 1000:.3f} ms of CPU per event, "
        f"{cpu / deliveries * 1e6:.1f} µs per delivery"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
