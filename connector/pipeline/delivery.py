"""A platform pipeline's stage: each event that targets the platform is delivered, in order per order.

Messages the intake dead-letters (undecodable, invalid, a conflicting copy of an `event_id`) are
skipped here without a word: the intake reports them, once.
"""

from __future__ import annotations

import time

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from connector.deliveries import DeliveryRunner
from connector.metrics import Metrics
from connector.models import OrderChangedEvent, Platform, Source
from connector.pipeline.lanes import LaneTicket, OrderingLanes
from connector.pipeline.pipeline import Work
from connector.pipeline.screening import MessageScreen, Screened


class DeliveryStage:
    def __init__(
        self, platform: Platform, screen: MessageScreen, runner: DeliveryRunner, metrics: Metrics
    ) -> None:
        self._platform = platform
        self._screen = screen
        self._runner = runner
        self._lanes = OrderingLanes()
        self._event_seconds = metrics.event_seconds

    def take(self, record: ConsumerRecord) -> Work:
        if record.value is None:
            return None
        screened = self._screen.screen(record, self._platform.value)
        event = screened.event
        if event is None or not event.targets.includes(self._platform):
            return None
        # The lane ticket is taken now, in consumption order: deliveries of one order keep input order.
        ticket = self._lanes.take(event.order.order_number)
        source = Source(record.topic, record.partition, record.offset)
        return self._deliver(screened, event, ticket, source, time.monotonic())

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self._screen.assigned(self._platform.value, [(tp.topic, tp.partition) for tp in partitions])

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self._screen.revoked(self._platform.value, [(tp.topic, tp.partition) for tp in partitions])

    async def _deliver(
        self,
        screened: Screened,
        event: OrderChangedEvent,
        ticket: LaneTicket,
        source: Source,
        consumed_at: float,
    ) -> None:
        try:
            if not await screened.first_seen_content():
                return
            await ticket.wait_turn()
            await self._runner.run(event, self._platform, source)
        finally:
            ticket.finish()
        self._event_seconds.observe(time.monotonic() - consumed_at)
