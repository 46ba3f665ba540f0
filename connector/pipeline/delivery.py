"""A platform pipeline's stage: each event that targets the platform is delivered, in order per order.

Messages the intake dead-letters (undecodable, invalid, a conflicting copy of an `event_id`) are
skipped here without a word: the intake reports them, once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from connector.delivery.dispatcher import SendPolicy
from connector.delivery.runner import Delivery, DeliveryRunner
from connector.models import Platform, Source
from connector.observability.metrics import Metrics
from connector.observability.tracecontext import TraceContext
from connector.pipeline.lanes import LaneTicket, OrderingLanes
from connector.pipeline.parking import Parking
from connector.pipeline.pipeline import Work
from connector.pipeline.screening import MessageScreen, first_seen_content
from connector.stores import ParkedDelivery


class _Waiting:
    """The versions of one order waiting for this platform: how many, and the newest."""

    __slots__ = ("count", "newest")

    def __init__(self) -> None:
        self.count = 0
        self.newest = 0


class _FromMemory(SendPolicy):
    """A delivery sent from the pipeline's window: superseded by a newer version of its order
    waiting behind it (with SUPERSEDE_QUEUED_VERSIONS), parked when a delivery of its connection
    and partition from below its offset waits in the store."""

    __slots__ = ("_at", "_parking", "_version", "_waiting")
    can_park = True

    def __init__(self, parking: Parking, at: Source, connection: str, waiting: _Waiting | None, version: int):
        self._parking = parking
        self._at = (connection, at.partition, at.offset)
        self._waiting = waiting
        self._version = version

    def superseded(self) -> bool:
        return self._waiting is not None and self._waiting.newest > self._version

    def park_now(self) -> bool:
        return self._parking.parked_below(*self._at)


class DeliveryStage:
    def __init__(
        self,
        platform: Platform,
        screen: MessageScreen,
        runner: DeliveryRunner,
        parking: Parking,
        metrics: Metrics,
        supersede: bool = False,
    ) -> None:
        self._platform = platform
        self._screen = screen
        self._runner = runner
        self._parking = parking
        self._lanes = OrderingLanes()
        self._event_seconds = metrics.event_seconds
        self._supersede = supersede
        #: With SUPERSEDE_QUEUED_VERSIONS: per order, the versions in this pipeline not yet done.
        self._waiting: dict[str, _Waiting] = {}

    def take(self, record: ConsumerRecord) -> Work:
        if record.value is None:
            return None
        screened = self._screen.screen(record, self._platform.value)
        event = screened.event
        if event is None or not event.targets.includes(self._platform):
            return None
        source = Source(record.topic, record.partition, record.offset)
        trace = TraceContext.from_headers(record.headers) if record.headers else None
        connection = event.targets.connection_of(self._platform)
        if self._parking.route(connection, record.partition, record.offset):
            # Its connection is held (or has its window in memory): it waits in the store, and
            # its offset completes once it is there.
            parked = ParkedDelivery(
                event.event_id,
                self._platform,
                connection,
                record.topic,
                record.partition,
                record.offset,
                record.value,
                trace.traceparent if trace is not None else None,
            )
            return self._park(screened.verdict(), parked)
        # The lane ticket is taken now, in consumption order: deliveries of one order keep input order.
        ticket = self._lanes.take(event.order.order_number)
        # From here on the delivery holds its request, not the decoded event (a tenth of the memory).
        delivery = self._runner.prepare(event, self._platform, source, trace)
        self._parking.entered(connection, record.partition)
        return self._deliver(screened.verdict(), delivery, ticket, time.monotonic(), record.value)

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        self._screen.assigned(self._platform.value, [(tp.topic, tp.partition) for tp in partitions])
        await self._parking.assigned([tp.partition for tp in partitions])

    async def revoked(self, partitions: list[TopicPartition]) -> None:
        self._screen.revoked(self._platform.value, [(tp.topic, tp.partition) for tp in partitions])
        await self._parking.revoked([tp.partition for tp in partitions])

    async def close(self) -> None:
        await self._parking.close()

    async def _park(self, verdict: asyncio.Future[bool], parked: ParkedDelivery) -> None:
        if not await first_seen_content(verdict):
            self._parking.unreserve(parked.connection, parked.partition)
            return  # a conflicting copy of an event_id: the intake dead-letters it
        await self._parking.park(parked)

    async def _deliver(
        self,
        verdict: asyncio.Future[bool],
        delivery: Delivery,
        ticket: LaneTicket,
        consumed_at: float,
        value: bytes,
    ) -> None:
        key = delivery.key
        source = delivery.source
        waiting: _Waiting | None = None
        parked: ParkedDelivery | None = None
        try:
            if not await first_seen_content(verdict):
                return  # a conflicting copy of an event_id: the intake dead-letters it
            if self._supersede:
                # Counted only once its content is known good: a conflicting copy supersedes nothing.
                waiting = self._waiting.setdefault(key.order_number, _Waiting())
                waiting.count += 1
                waiting.newest = max(waiting.newest, key.version)
            await ticket.wait_turn()
            policy = _FromMemory(self._parking, source, key.connection, waiting, key.version)
            if not await self._runner.run(dataclasses.replace(delivery, policy=policy)):
                # Its connection is held: its place in the store is taken before the next version
                # of the order (in memory behind this one) asks whether it must park too.
                self._parking.reserve(key.connection, source.partition, source.offset)
                parked = ParkedDelivery(
                    key.event_id,
                    self._platform,
                    key.connection,
                    source.topic,
                    source.partition,
                    source.offset,
                    value,
                    delivery.trace.traceparent,
                )
                await self._parking.park(parked)
        finally:
            self._parking.left(key.connection, source.partition)
            ticket.finish()
            if waiting is not None:
                waiting.count -= 1
                if not waiting.count:
                    del self._waiting[key.order_number]
        if parked is None:
            self._event_seconds.observe(time.monotonic() - consumed_at)
