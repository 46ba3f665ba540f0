"""One pipeline: its consumer group's messages, fetched, handed to its stage, committed once complete.

A message's path: `_fetch_loop` takes no more than the free capacity → `_accept` notes the offset
and asks the stage, synchronously and in consumption order, what the message needs → the work runs
as a task → `_complete` marks the offset done → `_commit_loop` commits what is contiguous.

Guarantees kept here:
- an offset is committed only once the stage's work for every message below it is complete (for a
  platform's pipeline: its result acknowledged by Kafka; for the intake: its DLQ copy acknowledged);
- at most `MAX_INFLIGHT_EVENTS` messages of this pipeline are in flight: fetching asks for no more
  than the free capacity, and this pipeline's partitions are paused at the limit (and while the
  idempotency store is down); other pipelines are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from connector.config import Settings
from connector.observability.metrics import Metrics
from connector.operations.supervisor import Policy, Supervisor
from connector.pipeline.backpressure import Backpressure
from connector.pipeline.offsets import OffsetTracker
from connector.pipeline.source import GroupConsumer
from connector.policies import Backoff
from connector.stores.guard import StoreGuard

log = logging.getLogger(__name__)

#: What a stage returns for a message: the work still to do (a coroutine to run, or a future that
#: the stage settles), or None when there is none.
Work = Coroutine[Any, Any, None] | asyncio.Future[None] | None


class Stage(Protocol):
    """What one pipeline does with each message."""

    def take(self, record: ConsumerRecord) -> Work:
        """Called synchronously, in consumption order (ordering tickets are taken here)."""
        ...

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        """The pipeline now reads these partitions (called before any of their messages is taken)."""
        ...

    async def revoked(self, partitions: list[TopicPartition]) -> None:
        """The pipeline no longer reads these partitions (its work on them is drained)."""
        ...

    async def close(self) -> None:
        """The pipeline stops: end what the stage runs beside the messages' work."""
        ...


@dataclass(slots=True)
class _Partition:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    tasks: set[asyncio.Future[None]] = field(default_factory=set)
    committed: int | None = None
    dropped: bool = False
    #: The lag last measured (end offset minus committed), for `order-sync status`.
    lag: int | None = None


class Pipeline:
    def __init__(
        self,
        name: str,
        group_id: str,
        stage: Stage,
        settings: Settings,
        guard: StoreGuard,
        metrics: Metrics,
        operator_paused: Callable[[], bool] = lambda: False,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.name = name
        self._stage = stage
        #: An operator paused this pipeline's platform (README "Operator controls"): no fetching.
        self._operator_paused = operator_paused
        self._was_operator_paused = False
        self._settings = settings
        self._supervisor = supervisor or Supervisor(metrics.background_task_failures)
        self._kafka = settings.kafka
        self._guard = guard
        self._metrics = metrics
        self._source = GroupConsumer(settings.kafka, group_id, name)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self.backpressure = Backpressure(name, settings.max_inflight_events, metrics)
        self._commits = metrics.commits.labels(name)
        self._stopping = asyncio.Event()
        #: True once the group was joined (with or without partitions); readiness reads it.
        self.joined = False

    @property
    def group_id(self) -> str:
        return self._source.group_id

    async def start(self) -> None:
        await self._source.start(self, self._stopping)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until `request_stop`, then finish in-flight work within the shutdown timeout and commit."""
        # A failed commit loop leaves the offsets' bookkeeping in doubt: the pod is restarted
        # (README "Background tasks"). The lag loop only measures: it is restarted.
        background = [
            self._supervisor.start(f"{self.name}-commits", self._commit_loop, Policy.FATAL),
            self._supervisor.start(f"{self.name}-lag", self._lag_loop, Policy.RESTART),
        ]
        try:
            await self._fetch_loop()
            await self._drain(self._settings.shutdown_timeout_s)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._stage.close()
            await self._commit()
            with contextlib.suppress(KafkaError):
                await self._source.stop()

    async def _fetch_loop(self) -> None:
        backoff = Backoff(0.2, 10.0)
        gate = self.backpressure
        while not self._stopping.is_set():
            try:
                if gate.should_pause(self._guard.up) or self._held_by_operator():
                    self._source.pause()
                    await self._source.keep_alive()
                    continue
                self._source.resume()
                batches = await self._source.fetch(min(gate.capacity, self._kafka.max_poll_records))
                backoff.reset()
            except KafkaError as exc:
                log.warning(
                    "fetch failed (%s); retrying in %.1fs", exc, backoff.delay, extra={"pipeline": self.name}
                )
                await backoff.wait()
                continue
            for tp, records in batches.items():
                partition = self._partitions.get(tp)
                if partition is None:
                    # Fetched for a partition this pipeline has not taken (yet): fetched again later.
                    if records:
                        self._source.rewind(tp, records[0].offset)
                    continue
                for record in records:
                    self._accept(partition, record)

    def snapshot(self) -> dict[str, object]:
        """What `order-sync status` shows of this pipeline."""
        return {
            "name": self.name,
            "group": self.group_id,
            "partitions": sorted(tp.partition for tp in self._partitions),
            "lag": {str(tp.partition): p.lag for tp, p in sorted(self._partitions.items())},
            "inflight": self.backpressure.inflight,
            "paused": self.backpressure.paused or self._was_operator_paused,
        }

    def _held_by_operator(self) -> bool:
        paused = self._operator_paused()
        if paused != self._was_operator_paused:
            self._was_operator_paused = paused
            log.info(
                "fetching %s by an operator's pause" % ("paused" if paused else "resumed"),
                extra={"pipeline": self.name},
            )
        return paused

    def _accept(self, partition: _Partition, record: ConsumerRecord) -> None:
        partition.tracker.add(record.offset)
        self.backpressure.added()
        work = self._stage.take(record)
        if work is None:
            self._complete(partition, record.offset)
            return
        pending = work if isinstance(work, asyncio.Future) else asyncio.ensure_future(work)
        partition.tasks.add(pending)
        pending.add_done_callback(functools.partial(self._settled, partition, record.offset))

    def _settled(self, partition: _Partition, offset: int, work: asyncio.Future[None]) -> None:
        partition.tasks.discard(work)
        # Cancelled work (rebalance, shutdown timeout) is not complete: its offset stays uncommitted.
        if work.cancelled():
            return
        if (exc := work.exception()) is not None:
            # A bug, not a platform's or the store's failure (stages end those in a result): the
            # offset stays uncommitted and the message is redone after a restart.
            log.error(
                "message handling failed: %r",
                exc,
                exc_info=exc,
                extra={"pipeline": self.name, "offset": offset},
            )
            return
        self._complete(partition, offset)

    def _complete(self, partition: _Partition, offset: int) -> None:
        if partition.dropped:
            return
        partition.tracker.completed(offset)
        self.backpressure.completed()

    async def _commit(self, tps: list[TopicPartition] | None = None) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp, partition in self._partitions.items():
            if tps is not None and tp not in tps:
                continue
            committable = partition.tracker.committable()
            if committable is not None and committable != partition.committed:
                offsets[tp] = committable
        if not offsets or not await self._source.commit(offsets):
            return
        self._commits.inc()
        for tp, offset in offsets.items():
            if (committed := self._partitions.get(tp)) is not None:
                committed.committed = offset

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._kafka.commit_interval_s)
            await self._commit()

    async def _lag_loop(self) -> None:
        gauge = self._metrics.consumer_lag
        while True:
            await asyncio.sleep(self._kafka.lag_refresh_s)
            # Paused (backpressure or an operator), no fetch response brings the log end: ask for it.
            paused = self.backpressure.paused or self._was_operator_paused
            ends = await self._source.end_offsets(list(self._partitions), paused)
            for tp, end in ends.items():
                tracked = self._partitions.get(tp)
                if tracked is None:
                    continue
                base = tracked.committed
                if base is None:
                    base = tracked.tracker.committable() or 0
                tracked.lag = max(0, end - base)
                gauge.labels(self.name, str(tp.partition)).set(tracked.lag)

    async def _drain(self, timeout_s: float, tps: list[TopicPartition] | None = None) -> None:
        """Wait up to `timeout_s` for in-flight work (of `tps`, or all), then cancel what is left."""
        selected = [p for tp, p in self._partitions.items() if tps is None or tp in tps]
        tasks: set[asyncio.Future[None]] = set().union(*(p.tasks for p in selected)) if selected else set()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        if pending:
            log.warning(
                "abandoning %d in-flight events after %.0fs",
                len(pending),
                timeout_s,
                extra={"pipeline": self.name},
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        mine = [tp for tp in revoked if tp in self._partitions]
        if not mine:
            return
        await self._drain(min(self._kafka.rebalance_drain_s, self._settings.shutdown_timeout_s), mine)
        await self._commit(mine)
        await self._stage.revoked(mine)
        for tp in mine:
            partition = self._partitions.pop(tp)
            partition.dropped = True
            self.backpressure.completed(partition.tracker.in_flight)
            # Another member reports this partition's lag now.
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(self.name, str(tp.partition))
        log.info(
            "partitions revoked",
            extra={"pipeline": self.name, "fields": {"partitions": sorted(tp.partition for tp in mine)}},
        )

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._partitions.setdefault(tp, _Partition())
        await self._stage.assigned(assigned)
        for tp in assigned:
            # Lag is measured from the committed offset; learn it now rather than after the first commit.
            self._partitions[tp].committed = await self._source.committed(tp)
        if (self.backpressure.paused or self._operator_paused()) and assigned:
            # New assignments start unpaused; nothing of them is fetched before the loop decides.
            self._source.pause(assigned)
        self.joined = True
        log.info(
            "partitions assigned",
            extra={"pipeline": self.name, "fields": {"partitions": sorted(tp.partition for tp in assigned)}},
        )
