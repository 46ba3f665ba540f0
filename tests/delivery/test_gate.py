"""A connection's gate (`delivery/gate.py`): its decisions and its backlog, on virtual time."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson

from connector.config import PlatformSettings
from connector.control.pauses import Pauses
from connector.control.records import ControlAction, ControlRecord, Target
from connector.delivery.connections import UNKNOWN_CONNECTION_LABEL, ConnectionRegistry
from connector.delivery.dispatcher import PlatformDispatcher
from connector.delivery.gate import Go, Versions
from connector.delivery.gates import Gates
from connector.delivery.parked import ParkedStore
from connector.delivery.runner import Delivery, DeliveryRunner
from connector.models import DEFAULT_CONNECTION, OrderChangedEvent, Platform, Source
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor
from connector.platforms.transport import Transport
from connector.stores import ParkedDelivery
from connector.stores.guard import StoreGuard
from connector.stores.memory import MemoryStore
from tests.pipeline.test_hold_model import FakeAdapter, Results, event_of
from tests.pipeline.test_hold_model import Platform_ as Account
from tests.policies.virtual_time import now, run_virtual

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def held_gauge(metrics: Metrics, connection: str) -> float:
    value = metrics.registry.get_sample_value(
        "order_sync_held_deliveries", {"platform": "sellercloud", "connection": connection}
    )
    return value or 0.0


async def test_connections_no_configuration_has_share_one_unknown_gauge_that_sums_them() -> None:
    metrics = Metrics()
    registry = ConnectionRegistry([Platform.SELLERCLOUD], Transport(), Redactor([]), metrics)
    gates = Gates(
        Platform.SELLERCLOUD, SimpleNamespace(connections=registry), None, None, metrics, capacity=100
    )  # type: ignore[arg-type]
    for offset in range(3):
        gates.gate("removed-a").reserve(0, offset)
    for offset in range(3, 5):
        gates.gate("removed-b").reserve(1, offset)
    # The last writer does not win: the gauge is what both hold.
    assert held_gauge(metrics, UNKNOWN_CONNECTION_LABEL) == 5
    gates.gate("removed-b").unreserve(1)
    gates.gate("removed-b").unreserve(1)
    assert held_gauge(metrics, UNKNOWN_CONNECTION_LABEL) == 3
    assert gates.held_backlog() == {"removed-a": 3}


# --- the decision and the drain, on virtual time ---------------------------------------------------

VM = Platform.VENTMERE


class Rig:
    """One Ventmere connection with a real dispatcher, runner and memory store, and its gate."""

    def __init__(self, capacity: int = 100) -> None:
        loop = asyncio.get_running_loop()
        self.metrics = Metrics()
        self.account = Account()  # every connection's account: this rig has the default one
        self.pauses = Pauses(self.metrics, clock=lambda: EPOCH + timedelta(seconds=loop.time()))
        settings = PlatformSettings(
            base_url="http://vm.invalid", circuit_reset_s=5.0, circuit_failure_threshold=2, max_attempts=3
        )
        adapter = FakeAdapter(DEFAULT_CONNECTION, self.account)
        self.dispatcher = PlatformDispatcher(adapter, settings, self.metrics)  # type: ignore[arg-type]
        self.dispatcher._hold._clock = loop.time
        self.dispatcher.circuit._clock = loop.time
        self.store = MemoryStore()
        self.results = Results()
        registry = ConnectionRegistry.of({VM: self.dispatcher})
        guard = StoreGuard(self.store, self.metrics)
        self.runner = DeliveryRunner(
            registry,
            guard,
            self.results,  # type: ignore[arg-type]
            self.metrics,
            "me",
            30,
        )
        self.gates = Gates(
            VM,
            self.runner,
            ParkedStore(guard),
            self.pauses,
            self.metrics,
            capacity,
        )
        self.gate = self.gates.gate(DEFAULT_CONNECTION)

    def delivery(self, order: str, version: int, offset: int) -> Delivery:
        event = OrderChangedEvent.model_validate(event_of(order, version, DEFAULT_CONNECTION))
        return self.runner.prepare(event, VM, Source("orders", 0, offset), None)

    def parked(self, order: str, version: int, offset: int) -> ParkedDelivery:
        value = orjson.dumps(event_of(order, version, DEFAULT_CONNECTION))
        return ParkedDelivery(f"{order}-v{version}", VM, DEFAULT_CONNECTION, "orders", 0, offset, value, None)

    async def send_from_memory(self, order: str, version: int, offset: int) -> bool:
        """As the stage does: consumed, then sent with its gate's turn; False when told to park."""
        assert self.gate.consumed(0, offset) is Go.SEND
        try:
            delivery = self.delivery(order, version, offset)
            turn = self.gate.turn_from_memory(None, order, version, 0, offset)
            return await self.runner.run(dataclasses.replace(delivery, turn=turn))
        finally:
            self.gate.left(0)

    def pause(self, until_s: float | None = None) -> None:
        now = EPOCH + timedelta(seconds=asyncio.get_running_loop().time())
        until = now + timedelta(seconds=until_s) if until_s is not None else None
        record = ControlRecord(action=ControlAction.PAUSE, target="ventmere", by="ops", at=now, until=until)
        self.pauses.apply(Target(platform=VM), record)

    def sent_versions(self) -> list[tuple[str, int]]:
        return [(sent.order, sent.version) for sent in self.account.sent]


def test_a_delivery_sends_at_once_while_nothing_holds_its_connection() -> None:
    async def main() -> None:
        rig = Rig()
        assert await rig.send_from_memory("o1", 1, 0)
        assert rig.sent_versions() == [("o1", 1)]
        assert rig.results.published == {"o1-v1": "applied"}

    run_virtual(main())


def test_a_short_throttle_is_waited_out_in_memory_and_a_long_one_parks() -> None:
    async def main() -> None:
        rig = Rig()
        rig.dispatcher._hold.hold_for(0.5)
        started = now()
        assert await rig.send_from_memory("o1", 1, 0)
        assert rig.account.sent[0].at >= started + 0.5  # nothing went inside the throttle
        rig.dispatcher._hold.hold_for(30)
        assert rig.gate.consumed(0, 1) is Go.PARK  # consumed now: straight to the store
        assert rig.gate.backlog == 1
        assert len(rig.account.sent) == 1

    run_virtual(main())


def test_a_delivery_in_memory_parks_before_its_request_when_its_connection_becomes_held() -> None:
    async def main() -> None:
        rig = Rig()
        rig.pause()
        # Consumed before the pause was read (it entered memory), asked again before its request.
        rig.pauses.apply(
            Target(platform=VM),
            ControlRecord(action=ControlAction.RESUME, target="ventmere", by="ops", at=EPOCH),
        )
        assert rig.gate.consumed(0, 0) is Go.SEND
        rig.pause()
        delivery = rig.delivery("o1", 1, 0)
        turn = rig.gate.turn_from_memory(None, "o1", 1, 0, 0)
        assert not await rig.runner.run(dataclasses.replace(delivery, turn=turn))
        rig.gate.left(0)
        assert rig.account.sent == []
        assert rig.results.published == {}  # nothing published: the caller parks it

    run_virtual(main())


def test_an_open_circuit_parks_new_deliveries_and_a_closed_one_sends_them() -> None:
    async def main() -> None:
        rig = Rig()
        rig.dispatcher.circuit.record_failure()
        rig.dispatcher.circuit.record_failure()
        assert rig.gate.held(rig.dispatcher)
        assert rig.gate.consumed(0, 0) is Go.PARK
        state = rig.gates.state(DEFAULT_CONNECTION)
        assert state is not None and state.circuit.value == "open" and state.backlog == 1

    run_virtual(main())


def test_a_delivery_behind_a_parked_one_of_its_partition_parks_too() -> None:
    async def main() -> None:
        rig = Rig()
        assert rig.gate.consumed(0, 5) is Go.SEND  # in memory
        rig.gate.reserve(0, 3)  # a delivery below it was parked meanwhile
        assert rig.gate.parked_below(0, 5)
        delivery = rig.delivery("o1", 2, 5)
        turn = rig.gate.turn_from_memory(None, "o1", 2, 0, 5)
        assert not await rig.runner.run(dataclasses.replace(delivery, turn=turn))
        rig.gate.left(0)
        # And one consumed after it: straight to the store, though nothing holds the connection.
        assert rig.gate.consumed(0, 6) is Go.PARK
        assert rig.account.sent == []

    run_virtual(main())


def test_a_connection_holding_its_share_of_a_window_more_than_half_full_parks_and_others_do_not() -> None:
    async def main() -> None:
        rig = Rig(capacity=8)
        for offset in range(6):
            assert rig.gate.consumed(0, offset) is Go.SEND  # alone, it has the whole window
        for _ in range(6):
            rig.gate.left(0)
        other = rig.gates.gate("eu")
        assert other.consumed(1, 0) is Go.SEND
        for offset in range(4):
            assert rig.gate.consumed(0, offset) is Go.SEND
        # The window is more than half full (5 of 8); the two connections active share it, 4 each.
        assert rig.gate.consumed(0, 4) is Go.PARK
        assert other.consumed(1, 1) is Go.SEND

    run_virtual(main())


def test_the_drain_sends_the_backlog_oldest_first_once_its_connection_is_resumed() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.gates.assigned([0])
        rig.pause(until_s=10)
        for offset, version in enumerate((1, 2, 3)):
            assert rig.gate.consumed(0, offset) is Go.PARK
            await rig.gate.park(rig.parked("o1", version, offset))
        assert rig.gates.held_backlog() == {DEFAULT_CONNECTION: 3}
        await asyncio.sleep(5)
        assert rig.account.sent == []  # paused: the drain's probe waits for the pause
        await wait_until(lambda: rig.gate.backlog == 0, 30)
        assert rig.sent_versions() == [("o1", 1), ("o1", 2), ("o1", 3)]
        assert rig.account.sent[0].at >= 10
        assert rig.gates.held_backlog() == {}
        await rig.gates.close()

    run_virtual(main())


def test_while_held_the_drain_sends_only_its_oldest_delivery_as_the_circuit_probe() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.gates.assigned([0])
        rig.account.down.add(DEFAULT_CONNECTION)
        rig.dispatcher.circuit.record_failure()
        rig.dispatcher.circuit.record_failure()
        for offset in range(4):
            assert rig.gate.consumed(0, offset) is Go.PARK
            await rig.gate.park(rig.parked(f"o{offset}", 1, offset))
        await asyncio.sleep(30)
        # Only the oldest was tried (a probe after each reset), the others stayed in the store.
        assert {sent.order for sent in rig.account.sent} == {"o0"}
        rig.account.down.discard(DEFAULT_CONNECTION)
        await wait_until(lambda: rig.gate.backlog == 0, 60)
        assert [sent.order for sent in rig.account.sent if sent.order != "o0"] == ["o1", "o2", "o3"]
        assert set(rig.results.published.values()) == {"applied"}
        await rig.gates.close()

    run_virtual(main())


def test_a_revoked_partition_stops_its_drain_and_forgets_its_backlog() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.gates.assigned([0])
        rig.pause()
        assert rig.gate.consumed(0, 0) is Go.PARK
        await rig.gate.park(rig.parked("o1", 1, 0))
        await rig.gates.revoked([0])
        assert rig.gates.held_backlog() == {}
        assert await rig.store.parked_counts(VM, [0]) == {(DEFAULT_CONNECTION, 0): 1}  # the next owner's

    run_virtual(main())


def test_versions_supersede_older_ones_of_the_same_order_only() -> None:
    versions = Versions()
    versions.add("o1", 1)
    versions.add("o1", 3)
    versions.add("o2", 1)
    assert versions.newer_than("o1", 1) and not versions.newer_than("o1", 3)
    assert not versions.newer_than("o2", 1)
    versions.done("o1")
    versions.done("o1")
    assert not versions.newer_than("o1", 1)


async def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = now() + timeout_s
    while not condition():
        assert now() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
