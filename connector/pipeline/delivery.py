"""A platform pipeline's stage: each event that targets the platform is delivered, in order per order.

Messages the intake dead-letters (undecodable, invalid, a conflicting copy of an `event_id`) are
skipped here without a word: the intake reports them, once.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from connector.delivery.gate import Go, TargetGate, Versions
from connector.delivery.gates import Gates
from connector.delivery.lanes import LaneTicket, OrderingLanes
from connector.delivery.runner import Delivery, DeliveryRunner
from connector.models import Platform, Source
from connector.observability.metrics import Metrics
from connector.observability.tracecontext import TraceContext
from connector.pipeline.pipeline import Work
from connector.pipeline.screening import MessageScreen, first_seen_content
from connector.stores import ParkedDelivery


class DeliveryStage:
    def __init__(
        self,
        platform: Platform,
        screen: MessageScreen,
        runner: DeliveryRunner,
        gates: Gates,
        metrics: Metrics,
        supersede: bool = False,
    ) -> None:
        self._platform = platform
        self._screen = screen
        self._runner = runner
        self._gates = gates
        self._lanes = OrderingLanes()
        self._event_seconds = metrics.event_seconds
        #: With SUPERSEDE_QUEUED_VERSIONS: per order, the versions in this pipeline not yet done.
        self._versions = Versions() if supersede else None

    def take(self, record: ConsumerRecord) -> Work:
        if record.value is None:
            return None
        screened = self._screen.screen(record, self._platform.value)
        event = screened.event
        if event is None or not event.targets.includes(self._platform):
            return None
        source = Source(record.topic, record.partition, record.offset)
        trace = TraceContext.from_headers(record.headers) if record.headers else None
        gate = self._gates.gate(event.targets.connection_of(self._platform))
        if gate.consumed(record.partition, record.offset) is Go.PARK:
            # Its gate says it waits in the store; its offset completes once it is there.
            parked = ParkedDelivery(
                event.event_id,
                self._platform,
                gate.connection,
                record.topic,
                record.partition,
                record.offset,
                record.value,
                trace.traceparent if trace is not None else None,
            )
            return self._park(screened.verdict(), gate, parked)
        # The lane ticket is taken now, in consumption order: deliveries of one order keep input order.
        order = event.order
        ticket = self._lanes.take(order.order_number)
        turn = gate.turn_from_memory(
            self._versions, order.order_number, order.version, record.partition, record.offset
        )
        # From here on the delivery holds its request, not the decoded event (a tenth of the memory).
        delivery = self._runner.prepare(event, self._platform, source, trace, turn)
        return self._deliver(screened.verdict(), gate, delivery, ticket, time.monotonic(), record.value)

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        self._screen.assigned(self._platform.value, [(tp.topic, tp.partition) for tp in partitions])
        await self._gates.assigned([tp.partition for tp in partitions])

    async def revoked(self, partitions: list[TopicPartition]) -> None:
        self._screen.revoked(self._platform.value, [(tp.topic, tp.partition) for tp in partitions])
        await self._gates.revoked([tp.partition for tp in partitions])

    async def close(self) -> None:
        await self._gates.close()

    async def _park(self, verdict: asyncio.Future[bool], gate: TargetGate, parked: ParkedDelivery) -> None:
        if not await first_seen_content(verdict):
            gate.unreserve(parked.partition)
            return  # a conflicting copy of an event_id: the intake dead-letters it
        await gate.park(parked)

    async def _deliver(
        self,
        verdict: asyncio.Future[bool],
        gate: TargetGate,
        delivery: Delivery,
        ticket: LaneTicket,
        consumed_at: float,
        value: bytes,
    ) -> None:
        key = delivery.key
        source = delivery.source
        versions: Versions | None = None
        parked = False
        try:
            if not await first_seen_content(verdict):
                return  # a conflicting copy of an event_id: the intake dead-letters it
            if self._versions is not None:
                # Counted only once its content is known good: a conflicting copy supersedes nothing.
                versions = self._versions
                versions.add(key.order_number, key.version)
            await ticket.wait_turn()
            if not await self._runner.run(delivery):
                # Its gate said park: its place in the store is taken before the next version of the
                # order (in memory behind this one) asks whether it must park too.
                parked = True
                gate.reserve(source.partition, source.offset)
                await gate.park(
                    ParkedDelivery(
                        key.event_id,
                        self._platform,
                        key.connection,
                        source.topic,
                        source.partition,
                        source.offset,
                        value,
                        delivery.trace.traceparent,
                    )
                )
        finally:
            gate.left(source.partition)
            ticket.finish()
            if versions is not None:
                versions.done(key.order_number)
        if not parked:
            self._event_seconds.observe(time.monotonic() - consumed_at)
