"""The consumer loop: fetch, decode, plan, fan out under ordering lanes, commit what is complete.

Guarantees kept here (CONTRACT §5):
- an offset is committed only once every event below it has all its results acknowledged;
- deliveries of one (order, platform) run in input order (lane tickets are taken synchronously,
  in consumption order, before anything is awaited);
- at most MAX_INFLIGHT_EVENTS events are in flight: `getmany` never asks for more than the free
  capacity, and fetching is paused at the limit (and while the idempotency store is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from connector.codec import decode_event, fingerprint
from connector.config import Settings
from connector.deliveries import DeliveryRunner
from connector.errors import DlqReason, InvalidEventError
from connector.kafka import consumer_options
from connector.lanes import LaneTicket, OrderingLanes
from connector.metrics import Metrics
from connector.models import OrderChangedEvent, Platform, Source
from connector.offsets import OffsetTracker
from connector.planner import plan_deliveries
from connector.publisher import Publisher
from connector.storeguard import StoreGuard

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Partition:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    committed: int | None = None
    dropped: bool = False


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka calls revoke before assign; committing inside revoke is the documented pattern."""

    def __init__(self, owner: EventConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._owner.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._owner.on_assigned(list(assigned))


class EventConsumer:
    def __init__(
        self,
        settings: Settings,
        runner: DeliveryRunner,
        publisher: Publisher,
        guard: StoreGuard,
        enabled: Collection[Platform],
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._kafka = settings.kafka
        self._runner = runner
        self._publisher = publisher
        self._guard = guard
        self._enabled = frozenset(enabled)
        self._metrics = metrics
        self._consumer = AIOKafkaConsumer(**consumer_options(settings.kafka))
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._lanes = OrderingLanes()
        self._event_ids = OrderingLanes()
        self._max_inflight = settings.max_inflight_events
        self._resume_below = settings.max_inflight_events - max(1, settings.max_inflight_events // 10) + 1
        self._inflight = 0
        self._paused = False
        self._stopping = asyncio.Event()
        self._drained = asyncio.Event()
        #: True once the group was joined (with or without partitions); readiness reads it.
        self.joined = False
        self.stopping = False

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def paused(self) -> bool:
        return self._paused

    async def start(self) -> None:
        """Connect, retrying with backoff while the broker is unreachable."""
        self._consumer.subscribe([self._kafka.input_topic], listener=_RebalanceListener(self))
        delay = 0.5
        while True:
            try:
                await self._consumer.start()
                return
            except KafkaError as exc:
                if self._stopping.is_set():
                    raise
                log.warning("Kafka not reachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def request_stop(self) -> None:
        self.stopping = True
        self._stopping.set()

    async def run(self) -> None:
        """Consume until `request_stop`, then finish in-flight work within the shutdown timeout and commit."""
        background = [
            asyncio.create_task(self._commit_loop(), name="commit-loop"),
            asyncio.create_task(self._lag_loop(), name="lag-loop"),
        ]
        try:
            await self._fetch_loop()
            await self._drain(self._settings.shutdown_timeout_s)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._commit()
            with contextlib.suppress(KafkaError):
                await self._consumer.stop()

    async def _fetch_loop(self) -> None:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                if self._must_pause():
                    self._pause()
                    # getmany on paused partitions returns nothing but keeps the member alive.
                    await self._consumer.getmany(timeout_ms=100)
                    continue
                self._resume()
                capacity = min(self._max_inflight - self._inflight, self._kafka.max_poll_records)
                batches = await self._consumer.getmany(timeout_ms=200, max_records=capacity)
                delay = 0.2
            except KafkaError as exc:
                log.warning("fetch failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            for tp, records in batches.items():
                partition = self._partitions.get(tp)
                if partition is None:
                    continue
                for record in records:
                    self._accept(tp, partition, record)

    def _must_pause(self) -> bool:
        if not self._guard.up:
            return True
        if self._paused:
            return self._inflight >= self._resume_below
        return self._inflight >= self._max_inflight

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._metrics.pauses.inc()
            self._metrics.partitions_paused.set(1)
            log.info("backpressure: fetching paused", extra={"fields": {"inflight_events": self._inflight}})
        self._consumer.pause(*self._consumer.assignment())

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._metrics.partitions_paused.set(0)
            self._consumer.resume(*self._consumer.assignment())
            log.info("backpressure: fetching resumed", extra={"fields": {"inflight_events": self._inflight}})

    def _accept(self, tp: TopicPartition, partition: _Partition, record: ConsumerRecord) -> None:
        partition.tracker.add(record.offset)
        self._inflight += 1
        self._metrics.inflight_events.set(self._inflight)
        if record.value is None:
            # A tombstone carries no change to apply: skipped and counted, not a DLQ record.
            self._metrics.tombstones.inc()
            self._complete(tp, partition, record.offset)
            return
        try:
            event = decode_event(record.value, self._kafka.max_message_bytes)
        except InvalidEventError as exc:
            self._metrics.events.labels("invalid").inc()
            self._spawn(tp, partition, self._dead_letter(tp, partition, record, exc.reason, str(exc)))
            return
        self._metrics.events.labels("valid").inc()
        tickets = [
            (platform, self._lanes.take((event.order.order_number, platform)))
            for platform in plan_deliveries(event, self._enabled)
        ]
        # Copies of one event_id are checked against the store in consumption order, whatever the
        # store's connection pool does, so the first copy is the one kept and a later one the conflict.
        identity = self._event_ids.take(event.event_id)
        self._spawn(
            tp, partition, self._process(tp, partition, record, event, identity, tickets, time.monotonic())
        )

    def _spawn(self, tp: TopicPartition, partition: _Partition, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        partition.tasks.add(task)
        task.add_done_callback(partition.tasks.discard)

    async def _process(
        self,
        tp: TopicPartition,
        partition: _Partition,
        record: ConsumerRecord,
        event: OrderChangedEvent,
        identity: LaneTicket,
        tickets: list[tuple[Platform, LaneTicket]],
        consumed_at: float,
    ) -> None:
        try:
            try:
                await identity.wait_turn()
                known = await self._runner.check_event(event.event_id, fingerprint(event))
            finally:
                identity.finish()
            if not known:
                await self._publish_dlq(
                    record, DlqReason.CONFLICT, f"event_id {event.event_id} was seen with different content"
                )
            else:
                source = Source(record.topic, record.partition, record.offset)
                await asyncio.gather(
                    *(self._deliver(event, platform, ticket, source) for platform, ticket in tickets)
                )
                self._metrics.event_seconds.observe(time.monotonic() - consumed_at)
        finally:
            for _, ticket in tickets:
                ticket.finish()
        self._complete(tp, partition, record.offset)

    async def _deliver(
        self, event: OrderChangedEvent, platform: Platform, ticket: LaneTicket, source: Source
    ) -> None:
        try:
            await ticket.wait_turn()
            await self._runner.run(event, platform, source)
        finally:
            ticket.finish()

    async def _dead_letter(
        self,
        tp: TopicPartition,
        partition: _Partition,
        record: ConsumerRecord,
        reason: DlqReason,
        message: str,
    ) -> None:
        await self._publish_dlq(record, reason, message)
        self._complete(tp, partition, record.offset)

    async def _publish_dlq(self, record: ConsumerRecord, reason: DlqReason, message: str) -> None:
        await self._publisher.publish_dlq(
            record.value, record.key, reason, message, record.topic, record.partition, record.offset
        )
        self._metrics.dlq.labels(reason.value).inc()
        log.warning(
            "message sent to DLQ: %s",
            message,
            extra={
                "fields": {"reason": reason.value},
                "partition": record.partition,
                "offset": record.offset,
            },
        )

    def _complete(self, tp: TopicPartition, partition: _Partition, offset: int) -> None:
        if partition.dropped:
            return
        partition.tracker.completed(offset)
        self._inflight -= 1
        self._metrics.inflight_events.set(self._inflight)

    async def _commit(self, tps: Collection[TopicPartition] | None = None) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, partition in self._partitions.items():
            if tps is not None and tp not in tps:
                continue
            committable = partition.tracker.committable()
            if committable is not None and committable != partition.committed:
                offsets[tp] = OffsetAndMetadata(committable, "")
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # A failed commit is retried on the next tick; at worst work is redone, never lost.
            log.warning("commit failed: %s", exc)
            return
        self._metrics.commits.inc()
        for tp, meta in offsets.items():
            if (committed := self._partitions.get(tp)) is not None:
                committed.committed = meta.offset

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._kafka.commit_interval_s)
            await self._commit()

    async def _lag_loop(self) -> None:
        while True:
            await asyncio.sleep(self._kafka.lag_refresh_s)
            # The high watermark arrives with every fetch response: no extra request per refresh.
            ends = {tp: self._consumer.highwater(tp) for tp in self._partitions}
            for tp, end in ends.items():
                if end is None:
                    continue
                tracked = self._partitions.get(tp)
                if tracked is None:
                    continue
                base = tracked.committed
                if base is None:
                    base = tracked.tracker.committable() or 0
                self._metrics.consumer_lag.labels(str(tp.partition)).set(max(0, end - base))

    async def _drain(self, timeout_s: float, tps: Collection[TopicPartition] | None = None) -> None:
        """Wait up to `timeout_s` for in-flight work (of `tps`, or all), then cancel what is left."""
        selected = [p for tp, p in self._partitions.items() if tps is None or tp in tps]
        tasks = set().union(*(p.tasks for p in selected)) if selected else set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            if pending:
                log.warning("abandoning %d in-flight events after %.0fs", len(pending), timeout_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        mine = [tp for tp in revoked if tp in self._partitions]
        if mine:
            await self._drain(min(self._kafka.rebalance_drain_s, self._settings.shutdown_timeout_s), mine)
            await self._commit(mine)
        for tp in mine:
            partition = self._partitions.pop(tp)
            partition.dropped = True
            self._inflight -= partition.tracker.in_flight
        self._metrics.inflight_events.set(self._inflight)
        if mine:
            log.info(
                "partitions revoked", extra={"fields": {"partitions": sorted(tp.partition for tp in mine)}}
            )

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._partitions.setdefault(tp, _Partition())
        for tp in assigned:
            # Lag is measured from the committed offset; learn it now rather than after the first commit.
            try:
                self._partitions[tp].committed = await self._consumer.committed(tp)
            except KafkaError as exc:
                log.debug("committed offset unknown: %s", exc)
        if self._paused and assigned:
            self._consumer.pause(*assigned)
        self.joined = True
        log.info(
            "partitions assigned", extra={"fields": {"partitions": sorted(tp.partition for tp in assigned)}}
        )
