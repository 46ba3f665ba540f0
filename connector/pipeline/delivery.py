"""A platform pipeline's stage: each event that targets the platform is delivered, in order per order.

Messages the intake dead-letters (undecodable, invalid, a conflicting copy of an `event_id`) are
skipped here without a word: the intake reports them, once.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from connector.delivery.runner import Delivery, DeliveryRunner
from connector.models import Platform, Source
from connector.observability.metrics import Metrics
from connector.observability.tracecontext import TraceContext
from connector.pipeline.lanes import LaneTicket, OrderingLanes
from connector.pipeline.pipeline import Work
from connector.pipeline.screening import MessageScreen, first_seen_content


class _Waiting:
    """The versions of one order waiting for this platform: how many, and the newest."""

    __slots__ = ("count", "newest")

    def __init__(self) -> None:
        self.count = 0
        self.newest = 0


class DeliveryStage:
    def __init__(
        self,
        platform: Platform,
        screen: MessageScreen,
        runner: DeliveryRunner,
        metrics: Metrics,
        supersede: bool = False,
    ) -> None:
        self._platform = platform
        self._screen = screen
        self._runner = runner
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
        # The lane ticket is taken now, in consumption order: deliveries of one order keep input order.
        ticket = self._lanes.take(event.order.order_number)
        # From here on the delivery holds its request, not the decoded event (a tenth of the memory).
        source = Source(record.topic, record.partition, record.offset)
        trace = TraceContext.from_headers(record.headers) if record.headers else None
        delivery = self._runner.prepare(event, self._platform, source, trace)
        return self._deliver(screened.verdict(), delivery, ticket, time.monotonic())

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self._screen.assigned(self._platform.value, [(tp.topic, tp.partition) for tp in partitions])

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self._screen.revoked(self._platform.value, [(tp.topic, tp.partition) for tp in partitions])

    async def _deliver(
        self, verdict: asyncio.Future[bool], delivery: Delivery, ticket: LaneTicket, consumed_at: float
    ) -> None:
        key = delivery.key
        waiting: _Waiting | None = None
        try:
            if not await first_seen_content(verdict):
                return  # a conflicting copy of an event_id: the intake dead-letters it
            if self._supersede:
                # Counted only once its content is known good: a conflicting copy supersedes nothing.
                waiting = self._waiting.setdefault(key.order_number, _Waiting())
                waiting.count += 1
                waiting.newest = max(waiting.newest, key.version)
            await ticket.wait_turn()
            superseded = None
            if waiting is not None:
                version, known = key.version, waiting
                superseded = lambda: known.newest > version  # noqa: E731 - asked before each send
            await self._runner.run(delivery, superseded)
        finally:
            ticket.finish()
            if waiting is not None:
                waiting.count -= 1
                if not waiting.count:
                    del self._waiting[key.order_number]
        self._event_seconds.observe(time.monotonic() - consumed_at)
