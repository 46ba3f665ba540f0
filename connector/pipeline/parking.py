"""Where a platform's deliveries wait while their connection cannot take them: the one owner of that.

README "Isolation between connections" argues the design; in short:

- A delivery normally waits in memory, in its pipeline's in-flight window. That is right while its
  connection takes requests. A connection that is held (circuit open, a long throttle, a pause) or
  that holds its share of a window more than half full (`MAX_INFLIGHT_EVENTS` divided among the
  connections with deliveries in memory) would otherwise fill the window of the whole platform,
  and its oldest delivery would hold back the commit of every later offset. A lone busy connection
  has the whole window, as before connections existed: nothing of it is parked unless it is held.
- So such a delivery is *parked*: written to the idempotency store (the input record whole, and
  where it came from), and its offset completes once the write is acknowledged. Memory holds a
  count per (connection, partition), never the backlog.
- Per (connection, partition), input order holds because nothing overtakes a parked delivery: while
  one is parked, every later delivery of that connection and partition is parked too (`route`), and
  one already in memory parks itself before sending (its `SendPolicy`). The store gives them back in
  offset order.
- One drainer task per connection with a backlog sends its parked deliveries, oldest first, through
  the same runner (claim, request, result, outcome) at the connection's own rate and concurrency,
  in pages of `window`; it starts on a partition only once that partition has no delivery of the
  connection left in memory. While the connection is held, the drainer sends the oldest one alone,
  waiting for the circuit as its probe; the rest stay in the store.
- A parked delivery is removed from the store only once its result is published and its outcome
  recorded; a hard kill in between repeats at most the page in flight (as for any in-flight work).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass

from prometheus_client import Gauge

from connector.delivery.connections import ConnectionRegistry
from connector.delivery.dispatcher import SendPolicy
from connector.delivery.runner import Delivery, DeliveryRunner
from connector.errors import InvalidEventError
from connector.models import Platform
from connector.observability.metrics import Metrics
from connector.pipeline.lanes import OrderingLanes
from connector.stores import ParkedDelivery

log = logging.getLogger(__name__)

#: How often a drainer looks again for a connection that was removed while deliveries waited for it.
REMOVED_RECHECK_S = 5.0
#: With SUPERSEDE_QUEUED_VERSIONS, parked deliveries read at once (versions collapse within a page).
SUPERSEDE_PAGE = 512
_NOTHING_PARKED = 2**63


class _FromStore(SendPolicy):
    """A parked delivery sent by the drain: with `stopped` (a page sent together), it parks again
    once another of its page found the connection held; with `newest` (SUPERSEDE_QUEUED_VERSIONS),
    it is superseded by a newer version of its order in the same page."""

    __slots__ = ("_newest", "_order", "_stopped", "_version", "can_park")

    def __init__(
        self, stopped: list[bool] | None, newest: dict[str, int] | None, order: str, version: int
    ) -> None:
        self._stopped = stopped
        self.can_park = stopped is not None
        self._newest = newest
        self._order = order
        self._version = version

    def superseded(self) -> bool:
        return self._newest is not None and self._newest[self._order] > self._version

    def park_now(self) -> bool:
        return bool(self._stopped)


@dataclass(slots=True)
class _Lane:
    """One connection on one partition."""

    #: Parked deliveries: written, or being written (`pending`), and not yet sent.
    backlog: int = 0
    pending: int = 0
    #: The lowest offset parked since the backlog was last empty (-1: unknown, as after a restart).
    floor: int = _NOTHING_PARKED
    #: Deliveries taken into memory and not yet done.
    in_memory: int = 0


class Parking:
    def __init__(
        self,
        platform: Platform,
        runner: DeliveryRunner,
        connections: ConnectionRegistry,
        metrics: Metrics,
        capacity: int,
        supersede: bool = False,
    ) -> None:
        self._platform = platform
        self._supersede = supersede
        self._turn = 0
        #: The pipeline's in-flight limit, shared among the connections with deliveries in memory.
        self._capacity = capacity
        self._runner = runner
        self._connections = connections
        self._held_metric = metrics.held_deliveries
        self._held_gauges: dict[str, Gauge] = {}
        #: The backlog last reported per connection that has one.
        self._held: dict[str, int] = {}
        #: The label each connection's backlog is counted under, and each label's total: connections
        #: no configuration has share `_unknown`, whose gauge is their sum (not the last one's).
        self._counted_as: dict[str, str] = {}
        self._label_totals: dict[str, int] = {}
        self._lanes: dict[str, dict[int, _Lane]] = {}
        self._in_memory: dict[str, int] = {}
        self._total_in_memory = 0
        self._partitions: set[int] = set()
        self._drainers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._removed_logged: set[str] = set()
        self._stopping = False

    # --- what the stage asks, synchronously and in consumption order ---------------------------

    def route(self, connection: str, partition: int, offset: int) -> bool:
        """True when this delivery must be parked (its place is reserved now); False when it goes
        from memory (then `entered` it, and `left` it when done)."""
        lanes = self._lanes.get(connection)
        lane = lanes.get(partition) if lanes is not None else None
        if lane is None or not lane.backlog:
            dispatcher = self._connections.dispatcher(self._platform, connection)
            if dispatcher is None:
                return False  # not configured (and nothing waits for it): unmappable at once
            if not dispatcher.held and not self._crowded(connection):
                return False
        self.reserve(connection, partition, offset)
        return True

    def _crowded(self, connection: str) -> bool:
        """The pipeline's window is more than half full and this connection holds its share of it
        (the window divided among the connections with deliveries in memory): more of it would
        starve the others. While the window has room, nobody is parked for being busy."""
        if self._total_in_memory <= self._capacity // 2:
            return False
        active = len(self._in_memory) + (connection not in self._in_memory)
        return self._in_memory.get(connection, 0) >= max(1, self._capacity // active)

    def entered(self, connection: str, partition: int) -> None:
        self._lane(connection, partition).in_memory += 1
        self._in_memory[connection] = self._in_memory.get(connection, 0) + 1
        self._total_in_memory += 1

    def left(self, connection: str, partition: int) -> None:
        lane = self._lane(connection, partition)
        lane.in_memory -= 1
        left = self._in_memory[connection] - 1
        self._total_in_memory -= 1
        if left:
            self._in_memory[connection] = left
        else:
            del self._in_memory[connection]
        if not lane.in_memory and lane.backlog:
            self._nudge(connection)
        self._forget_if_idle(connection, partition)

    def parked_below(self, connection: str, partition: int, offset: int) -> bool:
        """For a delivery in memory: must it park (a delivery of its connection and partition from
        below its offset waits in the store)? Asked before each send (its `SendPolicy`)."""
        lanes = self._lanes.get(connection)
        lane = lanes.get(partition) if lanes is not None else None
        return lane is not None and lane.backlog > 0 and lane.floor < offset

    def reserve(self, connection: str, partition: int, offset: int) -> None:
        """A delivery's place in the store, reserved now, before it is written (`park`): taken in
        `route` for one consumed while its connection is held, or by the stage for one in memory
        that found its connection held."""
        lane = self._lane(connection, partition)
        lane.backlog += 1
        lane.pending += 1
        lane.floor = min(lane.floor, offset)
        self._changed(connection)

    def unreserve(self, connection: str, partition: int) -> None:
        """A reserved place that will not be written (its event is a conflicting copy)."""
        lane = self._lane(connection, partition)
        lane.backlog -= 1
        lane.pending -= 1
        self._changed(connection)

    async def park(self, item: ParkedDelivery) -> None:
        """Write a delivery whose place was reserved; returns once the store holds it."""
        try:
            await self._runner.park(item)
        finally:
            self._lane(item.connection, item.partition).pending -= 1
        self._nudge(item.connection)

    def held_backlog(self) -> dict[str, int]:
        """Parked deliveries per connection that has any (for `order-sync status`)."""
        return dict(self._held)

    # --- partitions ---------------------------------------------------------------------------

    async def assigned(self, partitions: list[int]) -> None:
        """Learn what waits in the store for the partitions this pipeline now reads."""
        self._partitions.update(partitions)
        counts = await self._runner.parked_counts(self._platform, partitions)
        for (connection, partition), count in counts.items():
            lane = self._lane(connection, partition)
            lane.backlog += count
            lane.floor = -1  # the parked ones are older than anything consumed from now on
            self._changed(connection)
            self._nudge(connection)

    async def revoked(self, partitions: list[int]) -> None:
        """Stop sending what waits for `partitions`; the next owner finds it in the store."""
        gone = set(partitions)
        self._partitions -= gone
        touched = [c for c, lanes in self._lanes.items() if gone & lanes.keys()]
        await self._stop_drainers(touched)
        for connection in touched:
            lanes = self._lanes[connection]
            for partition in gone & lanes.keys():
                del lanes[partition]
            if not lanes:
                del self._lanes[connection]
            self._changed(connection)
            self._nudge(connection)

    async def close(self) -> None:
        self._stopping = True
        await self._stop_drainers(list(self._drainers))

    # --- the drain ----------------------------------------------------------------------------

    def _nudge(self, connection: str) -> None:
        if self._stopping:
            return
        wake = self._wake.get(connection)
        if wake is not None:
            wake.set()
        task = self._drainers.get(connection)
        if task is None and self._backlog(connection):
            self._wake[connection] = asyncio.Event()
            self._drainers[connection] = asyncio.create_task(
                self._drain(connection), name=f"drain-{self._platform.value}-{connection}"
            )

    async def _stop_drainers(self, connections: list[str]) -> None:
        tasks = [task for c in connections if (task := self._drainers.pop(c, None)) is not None]
        for connection in connections:
            self._wake.pop(connection, None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self, connection: str) -> None:
        wake = self._wake[connection]
        try:
            while self._backlog(connection):
                ready = self._ready(connection)
                dispatcher = self._connections.dispatcher(self._platform, connection)
                if dispatcher is None and ready:
                    self._note_removed(connection)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), REMOVED_RECHECK_S)
                    wake.clear()
                    continue
                if dispatcher is None or not ready:
                    await wake.wait()
                    wake.clear()
                    continue
                self._removed_logged.discard(connection)
                # One partition a page, in turn: an order lives in one partition, so a page holds
                # its versions in order, and the partitions share the connection's drain.
                partition = ready[self._turn % len(ready)]
                self._turn += 1
                # Superseding looks further ahead: only versions in one page collapse to the newest.
                size = max(dispatcher.window, SUPERSEDE_PAGE) if self._supersede else dispatcher.window
                page = await self._runner.parked(self._platform, connection, [partition], size)
                if not page:
                    self._settle_counts(connection, [partition])
                    continue
                prepared = [(item, delivery) for item in page if (delivery := await self._prepare(item))]
                if not prepared:
                    continue
                newest = self._newest(prepared)
                if dispatcher.held:
                    # The oldest goes alone and waits for the circuit as its probe; the rest stay.
                    await self._send(*prepared[0], newest, None, OrderingLanes())
                    continue
                stopped: list[bool] = []
                lanes = OrderingLanes()
                await asyncio.gather(
                    *(self._send(item, delivery, newest, stopped, lanes) for item, delivery in prepared)
                )
        finally:
            if self._drainers.get(connection) is asyncio.current_task():
                del self._drainers[connection]
                self._wake.pop(connection, None)

    async def _prepare(self, item: ParkedDelivery) -> Delivery | None:
        try:
            return self._runner.prepare_parked(item)
        except InvalidEventError as exc:
            # It passed the intake when it was parked; a record that no longer decodes is a bug.
            log.error(
                "parked delivery cannot be decoded; dropped: %s",
                exc,
                extra={
                    "event_id": item.event_id,
                    "platform": self._platform.value,
                    "connection": item.connection,
                },
            )
            await self._runner.unpark(item)
            self._sent(item)
            return None

    def _newest(self, prepared: list[tuple[ParkedDelivery, Delivery]]) -> dict[str, int] | None:
        """With SUPERSEDE_QUEUED_VERSIONS: the newest version of each order in the page; the older
        ones end `superseded` (versions parked in later pages are not known yet, and go out)."""
        if not self._supersede:
            return None
        newest: dict[str, int] = {}
        for _, delivery in prepared:
            key = delivery.key
            newest[key.order_number] = max(key.version, newest.get(key.order_number, key.version))
        return newest

    async def _send(
        self,
        item: ParkedDelivery,
        delivery: Delivery,
        newest: dict[str, int] | None,
        stopped: list[bool] | None,
        lanes: OrderingLanes,
    ) -> None:
        """Send one parked delivery; with `stopped`, not waiting for a held connection: the first
        that finds it held stops the page, and what follows in the page stays parked."""
        key = delivery.key
        ticket = lanes.take(key.order_number)
        try:
            await ticket.wait_turn()
            if stopped:
                return
            policy = _FromStore(stopped, newest, key.order_number, key.version)
            if not await self._runner.run(dataclasses.replace(delivery, policy=policy)):
                if stopped is not None:
                    stopped.append(True)
                return
        finally:
            ticket.finish()
        await self._runner.unpark(item)
        self._sent(item)

    def _sent(self, item: ParkedDelivery) -> None:
        lane = self._lane(item.connection, item.partition)
        lane.backlog = max(0, lane.backlog - 1)
        if not lane.backlog:
            lane.floor = _NOTHING_PARKED
        self._changed(item.connection)
        self._forget_if_idle(item.connection, item.partition)

    def _settle_counts(self, connection: str, partitions: list[int]) -> None:
        """The store holds nothing for these partitions: a count that says otherwise drifted (a
        record parked twice is kept once); with no write outstanding, it is zero."""
        for partition in partitions:
            lane = self._lane(connection, partition)
            if not lane.pending:
                lane.backlog = 0
                lane.floor = _NOTHING_PARKED
                self._forget_if_idle(connection, partition)
        self._changed(connection)

    def _ready(self, connection: str) -> list[int]:
        lanes = self._lanes.get(connection, {})
        return sorted(
            p
            for p, lane in lanes.items()
            if lane.backlog > lane.pending and not lane.in_memory and p in self._partitions
        )

    def _note_removed(self, connection: str) -> None:
        if connection in self._removed_logged:
            return
        self._removed_logged.add(connection)
        log.warning(
            "connection removed while %d deliveries wait for it; they stay parked until it is back",
            self._backlog(connection),
            extra={"platform": self._platform.value, "connection": connection},
        )

    # --- bookkeeping --------------------------------------------------------------------------

    def _lane(self, connection: str, partition: int) -> _Lane:
        lanes = self._lanes.setdefault(connection, {})
        lane = lanes.get(partition)
        if lane is None:
            lane = lanes[partition] = _Lane()
        return lane

    def _backlog(self, connection: str) -> int:
        return sum(lane.backlog for lane in self._lanes.get(connection, {}).values())

    def _forget_if_idle(self, connection: str, partition: int) -> None:
        lanes = self._lanes.get(connection)
        if lanes is None:
            return
        lane = lanes.get(partition)
        if lane is not None and not (lane.backlog or lane.in_memory or lane.pending):
            del lanes[partition]
            if not lanes:
                del self._lanes[connection]

    def _changed(self, connection: str) -> None:
        """Keep `order_sync_held_deliveries` and the log in step with the connection's backlog; the
        state is logged when it changes (held, caught up), not per delivery."""
        backlog = self._backlog(connection)
        before = self._held.get(connection, 0)
        if backlog == before:
            return
        if backlog:
            self._held[connection] = backlog
        else:
            del self._held[connection]
        self._count(connection, backlog - before, before)
        context = {"platform": self._platform.value, "connection": connection}
        if not before:
            log.warning("connection held: its deliveries wait in the store", extra=context)
        elif not backlog:
            log.info("connection caught up: none of its deliveries waits in the store", extra=context)

    def _count(self, connection: str, delta: int, before: int) -> None:
        """Move the connection's backlog change into its label's total, and the total to the gauge.
        A connection removed (or added) since its last change moves its count to its new label."""
        label = self._connections.label_of(self._platform, connection)
        counted = self._counted_as.get(connection)
        touched = {label}
        if counted is not None and counted != label:
            self._label_totals[counted] -= before
            self._label_totals[label] = self._label_totals.get(label, 0) + before
            touched.add(counted)
        self._label_totals[label] = self._label_totals.get(label, 0) + delta
        if self._held.get(connection):
            self._counted_as[connection] = label
        else:
            self._counted_as.pop(connection, None)
        for name in touched:
            gauge = self._held_gauges.get(name)
            if gauge is None:
                gauge = self._held_gauges[name] = self._held_metric.labels(self._platform.value, name)
            gauge.set(self._label_totals[name])
