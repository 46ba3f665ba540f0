"""Where a delivery stands in the store once its result is published, or abandoned on the way."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from connector.delivery.connections import ConnectionRegistry
from connector.delivery.dispatcher import DeliveryReport
from connector.delivery.runner import Delivery, DeliveryRunner
from connector.models import Outcome, Platform, Source
from connector.observability.metrics import Metrics
from connector.observability.tracecontext import TraceContext
from connector.platforms.http import PlatformRequest
from connector.stores import ClaimStatus, DeliveryKey
from connector.stores.guard import StoreGuard
from connector.stores.memory import MemoryStore

PLATFORM = Platform.VENTMERE


class AppliedAtOnce:
    """Stands in for a platform's dispatcher: every request is applied."""

    def __init__(self) -> None:
        self.sent = 0

    async def deliver(self, request: PlatformRequest, policy: Any = None) -> DeliveryReport:
        self.sent += 1
        return DeliveryReport(Outcome.APPLIED, 200, 1, None)


class HeldPublisher:
    """Records results; with `hold`, never returns (Kafka does not acknowledge)."""

    def __init__(self, hold: bool) -> None:
        self.hold = hold
        self.published: list[bytes] = []
        self.called = asyncio.Event()

    async def publish_result(self, result: Any, encoded: bytes, source: Source, trace: Any = None) -> None:
        self.published.append(encoded)
        self.called.set()
        if self.hold:
            await asyncio.Event().wait()


def a_delivery(version: int = 2) -> Delivery:
    key = DeliveryKey("evt-1", PLATFORM, "ord-1", version)
    request = PlatformRequest("PUT", "http://platform.invalid/orders/ord-1", (), b"{}")
    return Delivery(key, request, None, Source("orders", 0, 7), TraceContext.new())


def a_runner(store: MemoryStore, publisher: HeldPublisher, dispatcher: AppliedAtOnce) -> DeliveryRunner:
    guard = StoreGuard(store, Metrics())
    return DeliveryRunner(
        ConnectionRegistry.of({PLATFORM: dispatcher}),  # type: ignore[dict-item]
        guard,
        publisher,  # type: ignore[arg-type]
        Metrics(),
        owner="a",
        claim_lease_s=30,
    )


async def abandon_once(runner: DeliveryRunner, delivery: Delivery, reached: asyncio.Event) -> None:
    """Run the delivery until `reached` is set, then cancel it, as a rebalance or shutdown does."""
    running = asyncio.ensure_future(runner.run(delivery))
    await asyncio.wait_for(reached.wait(), 5)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_published_result_is_reported_and_its_version_applied_in_one_write() -> None:
    store, publisher, dispatcher = MemoryStore(), HeldPublisher(hold=False), AppliedAtOnce()
    delivery = a_delivery(version=2)

    await a_runner(store, publisher, dispatcher).run(delivery)

    assert len(publisher.published) == 1
    assert (await store.claim(delivery.key, "b", 30)).status is ClaimStatus.DUPLICATE
    older = DeliveryKey("evt-0", PLATFORM, "ord-1", 1)
    assert (await store.claim(older, "b", 30)).status is ClaimStatus.STALE


async def test_abandoned_before_kafka_acknowledged_keeps_the_outcome_for_the_next_owner() -> None:
    store, publisher, dispatcher = MemoryStore(), HeldPublisher(hold=True), AppliedAtOnce()
    delivery = a_delivery()
    await abandon_once(a_runner(store, publisher, dispatcher), delivery, publisher.called)

    claim = await store.claim(delivery.key, "b", 30)
    assert claim.status is ClaimStatus.UNREPORTED
    assert claim.result == publisher.published[0]
    assert orjson.loads(claim.result)["outcome"] == "applied"
    assert dispatcher.sent == 1


class SlowToReport(MemoryStore):
    """The first write of a reported outcome never returns (the store is slow or gone)."""

    def __init__(self) -> None:
        super().__init__()
        self.reporting = asyncio.Event()
        self._held = False

    async def record_outcomes(self, items: Any, *, reported: bool = False) -> None:
        if reported and not self._held:
            self._held = True
            self.reporting.set()
            await asyncio.Event().wait()
        await super().record_outcomes(items, reported=reported)


async def test_abandoned_while_reporting_records_the_report_once_more() -> None:
    store, publisher, dispatcher = SlowToReport(), HeldPublisher(hold=False), AppliedAtOnce()
    delivery = a_delivery()
    await abandon_once(a_runner(store, publisher, dispatcher), delivery, store.reporting)

    assert len(publisher.published) == 1
    assert (await store.claim(delivery.key, "b", 30)).status is ClaimStatus.DUPLICATE
