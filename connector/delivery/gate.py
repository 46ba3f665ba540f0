"""One connection's gate: the one owner of "send now, wait, or park" (README "Isolation between
connections").

Every delivery to a connection asks its gate, wherever it is:
- consumed by the platform's pipeline (`consumed`): into memory, or straight into the store;
- before each request, from memory or from the store (its `Turn`, which the dispatcher asks):
  send, wait in memory, or park;
- and the drain and the status ask it too. None of them decides it on its own.

The gate answers from the connection's pause (its own or its platform's), its dispatcher's circuit
and platform-wide throttle (the quota hold among them), the platform's window shared among its
connections, and its own backlog, which it owns:

- A delivery normally waits in memory, in its pipeline's in-flight window. A connection that is
  held (paused, circuit not closed, a throttle longer than `HOLD_IN_MEMORY_S`) or that holds its
  share of a window more than half full (`MAX_INFLIGHT_EVENTS` divided among the connections with
  deliveries in memory) would otherwise fill the window of the whole platform and hold back the
  commit of every later offset. A lone busy connection has the whole window.
- So such a delivery is *parked*: written to the idempotency store (the input record whole, and
  where it came from), and its offset completes once the write is acknowledged. Memory holds a
  count per partition, never the backlog.
- Per partition, input order holds because nothing overtakes a parked delivery: while one is
  parked, every later delivery of the connection and partition is parked too, and one already in
  memory parks itself before sending (`behind`). The store gives them back in offset order.
- The gate's drainer sends its parked deliveries, oldest first, through the same runner (claim,
  request, result, outcome) at the connection's own rate and concurrency, in pages of `window`,
  one partition a page in turn; it starts on a partition only once that partition has no delivery
  of the connection left in memory. While the connection is held, the drainer sends the oldest one
  alone, waiting for the circuit as its probe; the rest stay in the store.
- A parked delivery is removed from the store only once its result is published and its outcome
  recorded; a hard kill in between repeats at most the page in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Gauge

from connector.control.pauses import Pause, Pauses
from connector.delivery.connections import ConnectionRegistry
from connector.delivery.dispatcher import ConnectionHeld, PlatformDispatcher
from connector.delivery.lanes import OrderingLanes
from connector.delivery.parked import ParkedStore
from connector.delivery.runner import Delivery, DeliveryRunner
from connector.errors import InvalidEventError
from connector.models import Platform
from connector.policies.circuit import CircuitState
from connector.stores import ParkedDelivery

log = logging.getLogger(__name__)

#: A platform-wide throttle shorter than this is waited out in memory; a longer one parks.
HOLD_IN_MEMORY_S = 1.0
#: How often a drainer looks again for a connection that was removed while deliveries waited for it.
REMOVED_RECHECK_S = 5.0
#: With SUPERSEDE_QUEUED_VERSIONS, parked deliveries read at once (versions collapse within a page).
SUPERSEDE_PAGE = 512
_NOTHING_PARKED = 2**63


class Go(enum.Enum):
    SEND = "send"
    WAIT = "wait"
    PARK = "park"


class Versions:
    """The newest version of each order waiting for a connection, for SUPERSEDE_QUEUED_VERSIONS: a
    delivery is superseded once a newer version of its order waits behind it. The stage counts the
    versions in its window; the drain those of its page."""

    __slots__ = ("_orders",)

    def __init__(self) -> None:
        #: Per order: [versions waiting, the newest of them].
        self._orders: dict[str, list[int]] = {}

    def add(self, order: str, version: int) -> None:
        entry = self._orders.get(order)
        if entry is None:
            self._orders[order] = [1, version]
        else:
            entry[0] += 1
            entry[1] = max(entry[1], version)

    def done(self, order: str) -> None:
        entry = self._orders[order]
        entry[0] -= 1
        if not entry[0]:
            del self._orders[order]

    def newer_than(self, order: str, version: int) -> bool:
        entry = self._orders.get(order)
        return entry is not None and entry[1] > version


class _Turn:
    """A delivery's turn at its gate (the dispatcher's `Turn`): every question goes to the gate."""

    __slots__ = ("_gate", "_order", "_version", "_versions")
    #: May be parked instead of waiting in memory for a held connection.
    can_park = True

    def __init__(self, gate: TargetGate, versions: Versions | None, order: str, version: int) -> None:
        self._gate = gate
        self._versions = versions
        self._order = order
        self._version = version

    def may_send(self, dispatcher: PlatformDispatcher) -> bool:
        return self._gate.decide(self, dispatcher) is Go.SEND

    async def clear(self, dispatcher: PlatformDispatcher) -> float:
        return await self._gate.clear(self, dispatcher)

    def superseded(self) -> bool:
        return self._versions is not None and self._versions.newer_than(self._order, self._version)

    def behind(self) -> bool:
        """A delivery before this one waits in the store: this one must park (or stay) too."""
        return False

    def parking(self) -> None:
        """The gate said park."""


class _FromMemory(_Turn):
    """A delivery in the pipeline's window: parks when one of its partition from below its offset
    waits in the store."""

    __slots__ = ("_offset", "_partition")

    def __init__(
        self,
        gate: TargetGate,
        versions: Versions | None,
        order: str,
        version: int,
        partition: int,
        offset: int,
    ) -> None:
        super().__init__(gate, versions, order, version)
        self._partition = partition
        self._offset = offset

    def behind(self) -> bool:
        return self._gate.parked_below(self._partition, self._offset)


@dataclass(slots=True)
class _Page:
    """Parked deliveries sent together by the drain: once one of them is told to stay, the rest of
    the page stays too (a later version of its order must not overtake it)."""

    stopped: bool = False


class _FromStore(_Turn):
    __slots__ = ("_page",)

    def __init__(self, gate: TargetGate, versions: Versions | None, order: str, version: int, page: _Page):
        super().__init__(gate, versions, order, version)
        self._page = page

    def behind(self) -> bool:
        return self._page.stopped

    def parking(self) -> None:
        self._page.stopped = True


class _Probe(_Turn):
    """The oldest parked delivery of a held connection: waits in memory for the circuit, its probe."""

    __slots__ = ()
    can_park = False


@dataclass(slots=True)
class _Lane:
    """The connection on one partition."""

    #: Parked deliveries: written, or being written (`pending`), and not yet sent.
    backlog: int = 0
    pending: int = 0
    #: The lowest offset parked since the backlog was last empty (-1: unknown, as after a restart).
    floor: int = _NOTHING_PARKED
    #: Deliveries taken into memory and not yet done.
    in_memory: int = 0


class HeldGauge:
    """`order_sync_held_deliveries{platform, connection}`: connections no configuration has share
    the `_unknown` label, whose value is their sum (not the last one's)."""

    def __init__(self, platform: Platform, connections: ConnectionRegistry, metric: Gauge) -> None:
        self._platform = platform
        self._connections = connections
        self._metric = metric
        self._gauges: dict[str, Gauge] = {}
        #: The label each connection's backlog is counted under, and each label's total.
        self._counted_as: dict[str, str] = {}
        self._totals: dict[str, int] = {}

    def moved(self, connection: str, before: int, after: int) -> None:
        """A connection's backlog went from `before` to `after`. A connection removed (or added)
        since its last change moves its count to its new label."""
        label = self._connections.label_of(self._platform, connection)
        counted = self._counted_as.get(connection)
        touched = {label}
        if counted is not None and counted != label:
            self._totals[counted] -= before
            self._totals[label] = self._totals.get(label, 0) + before
            touched.add(counted)
        self._totals[label] = self._totals.get(label, 0) + after - before
        if after:
            self._counted_as[connection] = label
        else:
            self._counted_as.pop(connection, None)
        for name in touched:
            gauge = self._gauges.get(name)
            if gauge is None:
                gauge = self._gauges[name] = self._metric.labels(self._platform.value, name)
            gauge.set(self._totals[name])


@dataclass(slots=True, eq=False)
class PlatformShare:
    """What a platform's gates share: its pipeline's window, partitions, runner and pauses."""

    platform: Platform
    runner: DeliveryRunner
    parked: ParkedStore
    pauses: Pauses | None
    #: The pipeline's in-flight limit, shared among the connections with deliveries in memory.
    capacity: int
    supersede: bool
    held: HeldGauge
    partitions: set[int] = field(default_factory=set)
    in_memory: int = 0
    #: Connections with deliveries in memory.
    active: int = 0
    stopping: bool = False


@dataclass(frozen=True, slots=True)
class GateState:
    """What the status shows of a connection."""

    paused: Pause | None
    circuit: CircuitState
    throttled_for_s: float
    backlog: int


def _out_for_a_while(dispatcher: PlatformDispatcher) -> bool:
    """The dispatcher's own hold on the connection is long: its circuit is not closed, or a
    platform-wide throttle lasts longer than `HOLD_IN_MEMORY_S`."""
    closed = dispatcher.circuit.state is CircuitState.CLOSED
    return not closed or dispatcher.throttled_for_s > HOLD_IN_MEMORY_S


class TargetGate:
    """One connection's gate (the module docstring): its decision, its backlog, its drain."""

    def __init__(self, connection: str, share: PlatformShare) -> None:
        self.connection = connection
        self._share = share
        self._platform = share.platform
        self._connections = share.runner.connections
        self._lanes: dict[int, _Lane] = {}
        self.in_memory = 0
        #: The backlog last reported (gauge, log, status).
        self.backlog = 0
        self._drainer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._turn = 0
        self._removed_logged = False
        self._context = {"platform": self._platform.value, "connection": connection}

    # --- the decision -------------------------------------------------------------------------

    @property
    def paused(self) -> Pause | None:
        pauses = self._share.pauses
        return pauses.paused(self._platform, self.connection) if pauses is not None else None

    def held(self, dispatcher: PlatformDispatcher) -> bool:
        """The connection takes no request now and will not for a while: paused, its circuit not
        closed, or a platform-wide throttle longer than `HOLD_IN_MEMORY_S`."""
        return self.paused is not None or _out_for_a_while(dispatcher)

    def decide(self, turn: _Turn, dispatcher: PlatformDispatcher) -> Go:
        """Before a request: send now, wait in memory, or park."""
        # Asked before every request: the pause is looked up once.
        paused = self.paused is not None
        if turn.can_park and (turn.behind() or paused or _out_for_a_while(dispatcher)):
            turn.parking()
            return Go.PARK
        if paused or not dispatcher.ready():
            return Go.WAIT
        return Go.SEND

    async def clear(self, turn: _Turn, dispatcher: PlatformDispatcher) -> float:
        """Wait until `decide` says send (the seconds waited); `ConnectionHeld` when it says park."""
        started = time.monotonic()
        while (go := self.decide(turn, dispatcher)) is Go.WAIT:
            if self._share.pauses is not None:
                await self._share.pauses.wait_resumed(self._platform, self.connection)
            await dispatcher.wait_ready()
        if go is Go.PARK:
            raise ConnectionHeld
        return time.monotonic() - started

    def consumed(self, partition: int, offset: int) -> Go:
        """A delivery the pipeline just consumed: SEND (it enters memory; `left` once done) or PARK
        (its place in the store is reserved now; `park` writes it)."""
        lane = self._lanes.get(partition)
        if lane is None or not lane.backlog:
            dispatcher = self._connections.dispatcher(self._platform, self.connection)
            # A connection not configured (and nothing waits for it) ends unmappable at once.
            if dispatcher is None or not (self.held(dispatcher) or self._crowded()):
                self._entered(partition)
                return Go.SEND
        self.reserve(partition, offset)
        return Go.PARK

    def turn_from_memory(
        self, versions: Versions | None, order: str, version: int, partition: int, offset: int
    ) -> _Turn:
        return _FromMemory(self, versions, order, version, partition, offset)

    def _crowded(self) -> bool:
        """The window is more than half full and this connection holds its share of it (the window
        divided among the connections with deliveries in memory): more would starve the others."""
        share = self._share
        if share.in_memory <= share.capacity // 2:
            return False
        active = share.active + (not self.in_memory)
        return self.in_memory >= max(1, share.capacity // active)

    def parked_below(self, partition: int, offset: int) -> bool:
        lane = self._lanes.get(partition)
        return lane is not None and lane.backlog > 0 and lane.floor < offset

    def state(self) -> GateState | None:
        dispatcher = self._connections.dispatcher(self._platform, self.connection)
        if dispatcher is None:
            return None
        return GateState(self.paused, dispatcher.circuit.state, dispatcher.throttled_for_s, self.backlog)

    # --- the backlog --------------------------------------------------------------------------

    def _entered(self, partition: int) -> None:
        self._lane(partition).in_memory += 1
        if not self.in_memory:
            self._share.active += 1
        self.in_memory += 1
        self._share.in_memory += 1

    def left(self, partition: int) -> None:
        """A delivery that entered memory is done (sent, parked or abandoned)."""
        lane = self._lane(partition)
        lane.in_memory -= 1
        self.in_memory -= 1
        self._share.in_memory -= 1
        if not self.in_memory:
            self._share.active -= 1
        if not lane.in_memory and lane.backlog:
            self._nudge()
        self._forget_if_idle(partition)

    def reserve(self, partition: int, offset: int) -> None:
        """A delivery's place in the store, reserved before it is written (`park`)."""
        lane = self._lane(partition)
        lane.backlog += 1
        lane.pending += 1
        lane.floor = min(lane.floor, offset)
        self._changed()

    def unreserve(self, partition: int) -> None:
        """A reserved place that will not be written (its event is a conflicting copy)."""
        lane = self._lane(partition)
        lane.backlog -= 1
        lane.pending -= 1
        self._changed()

    async def park(self, item: ParkedDelivery) -> None:
        """Write a delivery whose place was reserved; returns once the store holds it."""
        try:
            await self._share.parked.park(item)
        finally:
            self._lane(item.partition).pending -= 1
        self._nudge()

    def found(self, partition: int, count: int) -> None:
        """`count` deliveries wait in the store for a partition just assigned."""
        lane = self._lane(partition)
        lane.backlog += count
        lane.floor = -1  # the parked ones are older than anything consumed from now on
        self._changed()
        self._nudge()

    async def revoked(self, partitions: set[int]) -> None:
        """Stop sending what waits for `partitions`; the next owner finds it in the store."""
        if not partitions & self._lanes.keys():
            return
        await self.stop()
        for partition in partitions & self._lanes.keys():
            del self._lanes[partition]
        self._changed()
        self._nudge()

    async def stop(self) -> None:
        task, self._drainer = self._drainer, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @property
    def idle(self) -> bool:
        return not self._lanes and self._drainer is None and not self.in_memory

    def _lane(self, partition: int) -> _Lane:
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = _Lane()
        return lane

    def _forget_if_idle(self, partition: int) -> None:
        lane = self._lanes.get(partition)
        if lane is not None and not (lane.backlog or lane.in_memory or lane.pending):
            del self._lanes[partition]

    def _changed(self) -> None:
        """Keep the gauge and the log in step with the backlog; the state is logged when it changes
        (held, caught up), not per delivery."""
        backlog = sum(lane.backlog for lane in self._lanes.values())
        before = self.backlog
        if backlog == before:
            return
        self.backlog = backlog
        self._share.held.moved(self.connection, before, backlog)
        if not before:
            log.warning("connection held: its deliveries wait in the store", extra=self._context)
        elif not backlog:
            log.info("connection caught up: none of its deliveries waits in the store", extra=self._context)

    # --- the drain ----------------------------------------------------------------------------

    def _nudge(self) -> None:
        if self._share.stopping:
            return
        self._wake.set()
        if self._drainer is None and self.backlog:
            self._drainer = asyncio.create_task(
                self._drain(), name=f"drain-{self._platform.value}-{self.connection}"
            )

    def _ready(self) -> list[int]:
        """The partitions whose backlog the drain may send now."""
        return sorted(
            p
            for p, lane in self._lanes.items()
            if lane.backlog > lane.pending and not lane.in_memory and p in self._share.partitions
        )

    async def _drain(self) -> None:
        try:
            while self.backlog:
                ready = self._ready()
                dispatcher = self._connections.dispatcher(self._platform, self.connection)
                if dispatcher is None or not ready:
                    await self._sleep(removed=dispatcher is None and bool(ready))
                    continue
                self._removed_logged = False
                # One partition a page, in turn: an order lives in one partition, so a page holds
                # its versions in order, and the partitions share the connection's drain.
                partition = ready[self._turn % len(ready)]
                self._turn += 1
                await self._drain_page(dispatcher, partition)
        finally:
            if self._drainer is asyncio.current_task():
                self._drainer = None

    async def _sleep(self, removed: bool) -> None:
        """Until nudged; for a removed connection, also every `REMOVED_RECHECK_S`."""
        if removed:
            self._note_removed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), REMOVED_RECHECK_S)
        else:
            await self._wake.wait()
        self._wake.clear()

    async def _drain_page(self, dispatcher: PlatformDispatcher, partition: int) -> None:
        # Superseding looks further ahead: only versions in one page collapse to the newest.
        size = max(dispatcher.window, SUPERSEDE_PAGE) if self._share.supersede else dispatcher.window
        page = await self._share.parked.page(self._platform, self.connection, [partition], size)
        if not page:
            self._settle_count(partition)
            return
        prepared = [(item, delivery) for item in page if (delivery := await self._prepare(item))]
        versions = self._versions(prepared) if self._share.supersede else None
        if prepared and self.held(dispatcher):
            # The oldest goes alone and waits for the circuit as its probe; the rest stay.
            item, delivery = prepared[0]
            probe = _Probe(self, versions, delivery.key.order_number, delivery.key.version)
            await self._send(item, delivery, probe, OrderingLanes())
            return
        together = _Page()
        lanes = OrderingLanes()
        await asyncio.gather(
            *(
                self._send(
                    item,
                    delivery,
                    _FromStore(self, versions, delivery.key.order_number, delivery.key.version, together),
                    lanes,
                )
                for item, delivery in prepared
            )
        )

    async def _prepare(self, item: ParkedDelivery) -> Delivery | None:
        try:
            return self._share.runner.prepare_parked(item)
        except InvalidEventError as exc:
            # It passed the intake when it was parked; a record that no longer decodes is a bug.
            log.error(
                "parked delivery cannot be decoded; dropped: %s",
                exc,
                extra={**self._context, "event_id": item.event_id},
            )
            await self._share.parked.unpark(item)
            self._sent(item)
            return None

    @staticmethod
    def _versions(prepared: list[tuple[ParkedDelivery, Delivery]]) -> Versions:
        """The versions of each order in the page: the older ones end `superseded` (versions parked
        in later pages are not known yet, and go out)."""
        versions = Versions()
        for _, delivery in prepared:
            versions.add(delivery.key.order_number, delivery.key.version)
        return versions

    async def _send(
        self, item: ParkedDelivery, delivery: Delivery, turn: _Turn, lanes: OrderingLanes
    ) -> None:
        """Send one parked delivery; it stays in the store when its turn says park."""
        ticket = lanes.take(delivery.key.order_number)
        try:
            await ticket.wait_turn()
            if turn.behind():
                return
            if not await self._share.runner.run(dataclasses.replace(delivery, turn=turn)):
                return
        finally:
            ticket.finish()
        await self._share.parked.unpark(item)
        self._sent(item)

    def _sent(self, item: ParkedDelivery) -> None:
        lane = self._lane(item.partition)
        lane.backlog = max(0, lane.backlog - 1)
        if not lane.backlog:
            lane.floor = _NOTHING_PARKED
        self._changed()
        self._forget_if_idle(item.partition)

    def _settle_count(self, partition: int) -> None:
        """The store holds nothing for this partition: a count that says otherwise drifted (a
        record parked twice is kept once); with no write outstanding, it is zero."""
        lane = self._lane(partition)
        if not lane.pending:
            lane.backlog = 0
            lane.floor = _NOTHING_PARKED
            self._forget_if_idle(partition)
        self._changed()

    def _note_removed(self) -> None:
        if self._removed_logged:
            return
        self._removed_logged = True
        log.warning(
            "connection removed while %d deliveries wait for it; they stay parked until it is back",
            self.backlog,
            extra=self._context,
        )
