"""A model-based test of the hold logic across Kafka's group changes (Hypothesis' state machine).

In one process, on virtual time, the real classes of a platform's pipeline (`Pipeline`,
`GroupConsumer`, `DeliveryStage`, `Gates` and `TargetGate`, `MessageScreen`, `DeliveryRunner`,
`PlatformDispatcher` with its real circuit, throttle hold and `Pauses`) run for up to two replicas
over one memory store. Random interleavings of events arriving, pauses (with and without `until`),
resumes, outages (the circuit opens), a platform-wide throttle, rebalances, and replicas stopping
and starting are checked after every step:

- no request reaches a paused target after its pause was applied;
- every connection's orders are applied in input order;
- the held-backlog counts equal what the store holds (once the replica is quiet);
- at the end, once every pause has ended and every fault has cleared, everything is delivered
  within a bounded (virtual) time, and no delivery is lost.

What stands in for Kafka is `FakeKafkaConsumer`, below: a broker cannot run on virtual time. It
keeps to the semantics of aiokafka's consumer that the pipeline relies on (and that the end-to-end
tests check against the real broker): pause state belongs to an assignment, so a partition assigned
by a rebalance starts unpaused; `getmany` returns only records of assigned, unpaused partitions from
their position and moves the position past them; `seek` moves it; the group's committed offsets are
shared by its members, and a new assignment starts from them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from connector.config import PlatformSettings, Settings, load_settings
from connector.control.pauses import Pauses
from connector.control.records import ControlAction, ControlRecord, Target
from connector.delivery.connections import ConnectionRegistry
from connector.delivery.dispatcher import PlatformDispatcher
from connector.delivery.gates import Gates
from connector.delivery.parked import ParkedStore
from connector.delivery.runner import DeliveryRunner
from connector.models import ErrorCategory, OrderChangedEvent, Platform
from connector.observability.metrics import Metrics
from connector.pipeline import source as source_module
from connector.pipeline.delivery import DeliveryStage
from connector.pipeline.pipeline import Pipeline
from connector.pipeline.screening import MessageScreen
from connector.platforms.base import Attempt, Verdict, WaitScope
from connector.platforms.http import PlatformRequest
from connector.stores import memory as memory_module
from connector.stores.batching import EventChecks
from connector.stores.guard import StoreGuard
from connector.stores.memory import MemoryStore
from tests.policies.virtual_time import VirtualTimeLoop
from tests.support.events import make_event

PLATFORM = Platform.VENTMERE
TOPIC = "orders"
PARTITIONS = 2
CONNECTIONS = ("default", "eu")
ORDERS = ("o1", "o2", "o3", "o4")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
#: Once every pause and fault is over, everything must be delivered within this (virtual) time.
SETTLE_S = 120.0


# --- Kafka, as the pipeline sees it ---------------------------------------------------------------


@dataclass
class Broker:
    """The input topic and the group's committed offsets, shared by every member."""

    log: dict[int, list[ConsumerRecord]] = field(default_factory=lambda: {p: [] for p in range(PARTITIONS)})
    committed: dict[int, int] = field(default_factory=dict)

    def append(self, partition: int, key: bytes, value: bytes) -> None:
        records = self.log[partition]
        records.append(
            ConsumerRecord(TOPIC, partition, len(records), 0, 0, key, value, None, len(key), len(value), ())
        )


class _PartitionState:
    def __init__(self, position: int) -> None:
        self.position = position
        self.paused = False


class FakeKafkaConsumer:
    """aiokafka's consumer as the pipeline uses it (see the module docstring)."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._assignment: dict[TopicPartition, _PartitionState] = {}

    # group membership, driven by the model
    def assign(self, partitions: list[int]) -> list[TopicPartition]:
        self._assignment = {
            TopicPartition(TOPIC, p): _PartitionState(self._broker.committed.get(p, 0)) for p in partitions
        }
        return list(self._assignment)

    def unassign(self) -> list[TopicPartition]:
        gone, self._assignment = list(self._assignment), {}
        return gone

    # what GroupConsumer calls
    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._assignment)

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            if tp in self._assignment:
                self._assignment[tp].paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            if tp in self._assignment:
                self._assignment[tp].paused = False

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._assignment[tp].position = offset

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        await asyncio.sleep(timeout_ms / 1000)
        budget = max_records or 500
        fetched: dict[TopicPartition, list[ConsumerRecord]] = {}
        for tp, state in list(self._assignment.items()):
            if state.paused or budget <= 0:
                continue
            records = self._broker.log[tp.partition][state.position : state.position + budget]
            if records:
                fetched[tp] = records
                state.position += len(records)
                budget -= len(records)
        return fetched

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, meta in offsets.items():
            self._broker.committed[tp.partition] = meta.offset

    async def committed(self, tp: TopicPartition) -> int | None:
        return self._broker.committed.get(tp.partition)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self._broker.log[tp.partition])

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self._broker.log[tp.partition]) for tp in partitions}

    async def stop(self) -> None:
        self._assignment = {}


# --- the platform ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    at: float
    connection: str
    order: str
    version: int


class Platform_:
    """Every connection's account: applies what it is sent, unless down or throttling."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.down: set[str] = set()
        self.throttle_next: dict[str, float] = {}


class FakeAdapter:
    platform = PLATFORM

    def __init__(self, connection: str, account: Platform_) -> None:
        self._connection = connection
        self._account = account

    def build_request(self, event: OrderChangedEvent) -> PlatformRequest:
        order = event.order
        return PlatformRequest("PUT", f"http://vm.invalid/{order.order_number}/{order.version}", (), b"{}")

    async def attempt(self, request: PlatformRequest) -> Attempt:
        await asyncio.sleep(0.01)
        *_, order, version = request.url.rsplit("/", 2)
        loop = asyncio.get_running_loop()
        self._account.sent.append(Sent(loop.time(), self._connection, order, int(version)))
        if self._connection in self._account.down:
            return Attempt(Verdict.RETRY, 503, ErrorCategory.SERVER_ERROR, "down")
        retry_after = self._account.throttle_next.pop(self._connection, None)
        if retry_after is not None:
            return Attempt(
                Verdict.RETRY,
                429,
                ErrorCategory.RATE_LIMITED,
                "throttled",
                retry_after=retry_after,
                wait_scope=WaitScope.PLATFORM,
            )
        return Attempt(Verdict.APPLIED, 200)


class Results:
    """Kafka's result topic: every result published."""

    def __init__(self) -> None:
        self.published: dict[str, str] = {}

    async def publish_result(self, result: Any, encoded: bytes, source: Any, trace: Any = None) -> None:
        self.published[result.event_id] = orjson.loads(encoded)["outcome"]


# --- a replica ------------------------------------------------------------------------------------


class Replica:
    def __init__(
        self, name: str, settings: Settings, store: MemoryStore, broker: Broker, world: HoldModel
    ) -> None:
        metrics = Metrics()
        self.pauses = Pauses(metrics, clock=world.clock)
        platform_settings = PlatformSettings(
            base_url="http://vm.invalid",
            circuit_reset_s=5.0,
            circuit_failure_threshold=3,
            max_concurrency=4,
            backoff_base_s=0.05,
            backoff_max_s=1.0,
        )
        dispatchers = {
            (PLATFORM, c): PlatformDispatcher(
                FakeAdapter(c, world.platform),  # type: ignore[arg-type]
                platform_settings,
                metrics,
                c,
            )
            for c in CONNECTIONS
        }
        for dispatcher in dispatchers.values():
            # The throttle hold and the circuit on the loop's (virtual) clock.
            dispatcher._hold._clock = world.loop.time
            dispatcher.circuit._clock = world.loop.time
        registry = ConnectionRegistry.of(dispatchers)
        self.runner = DeliveryRunner(
            registry,
            StoreGuard(store, metrics),
            world.results,  # type: ignore[arg-type]
            metrics,
            owner=name,
            claim_lease_s=30,
        )
        guard = StoreGuard(store, metrics)
        screen = MessageScreen(EventChecks(guard).check_event, 1 << 20, capacity=64, judged_span=4096)
        self.parked = ParkedStore(guard)
        self.gates = Gates(
            PLATFORM, self.runner, self.parked, self.pauses, metrics, settings.max_inflight_events
        )
        stage = DeliveryStage(PLATFORM, screen, self.runner, self.gates, metrics)
        self.pipeline = Pipeline(
            PLATFORM.value,
            "group.ventmere",
            stage,
            settings,
            StoreGuard(store, metrics),
            metrics,
            self.gates.fetch_paused,
        )
        self.client: FakeKafkaConsumer = self.pipeline._source._client  # type: ignore[assignment]
        self.task = asyncio.create_task(self.pipeline.run(), name=f"replica-{name}")
        self.partitions: list[int] = []


def event_of(order: str, version: int, connection: str) -> dict[str, Any]:
    return make_event(
        order,
        version,
        {"ventmere": {"order_id": order, "account_id": "acct", "connection": connection}},
        event_id=f"{order}-v{version}",
    )


class HoldModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualTimeLoop()
        asyncio.set_event_loop(self.loop)
        self.platform = Platform_()
        self.results = Results()
        self.broker = Broker()
        self.store = MemoryStore()
        self.settings = load_settings(
            None,
            {
                "ORDER_SYNC_KAFKA__COMMIT_INTERVAL_S": "0.5",
                "ORDER_SYNC_KAFKA__LAG_REFRESH_S": "1",
                "ORDER_SYNC_KAFKA__REBALANCE_DRAIN_S": "2",
                "ORDER_SYNC_MAX_INFLIGHT_EVENTS": "16",
            },
        )
        self.replicas: list[Replica] = []
        self.versions: dict[str, int] = {}
        self.produced: dict[str, str] = {}  # event_id -> connection
        #: Per target: when its pause was applied on every replica, while it holds (None: not paused).
        self.paused_since: dict[Target, float] = {}
        self.replica_names = iter(range(1000))
        # GroupConsumer's client: Kafka as the model keeps it.
        self._real_consumer = source_module.AIOKafkaConsumer
        source_module.AIOKafkaConsumer = lambda **_: FakeKafkaConsumer(self.broker)
        # The store's claim leases run on the same virtual clock (a stopped replica's claim expires).
        self._real_time = memory_module.time
        memory_module.time = SimpleNamespace(time=lambda: EPOCH.timestamp() + self.loop.time())  # type: ignore[assignment]

    # --- plumbing --------------------------------------------------------------------------------

    def clock(self) -> datetime:
        return EPOCH + timedelta(seconds=self.loop.time())

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def advance(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))
        for replica in self.replicas:
            if replica.task.done() and replica.task.exception() is not None:
                raise replica.task.exception()  # type: ignore[misc]

    def teardown(self) -> None:
        try:
            # Every example ends with everything cleared: nothing may stay undelivered.
            self.everything_clears_and_is_delivered()
        finally:
            self._stop()

    def _stop(self) -> None:
        async def stop_all() -> None:
            for replica in self.replicas:
                replica.pipeline.request_stop()
            await asyncio.gather(*(r.task for r in self.replicas), return_exceptions=True)

        try:
            self.run(stop_all())
        finally:
            source_module.AIOKafkaConsumer = self._real_consumer
            memory_module.time = self._real_time
            self.loop.close()
            asyncio.set_event_loop(None)

    async def _rebalance(self) -> None:
        """Revoke everything, then spread the partitions over the running replicas (eager)."""
        for replica in self.replicas:
            gone = replica.client.unassign()
            if gone:
                await replica.pipeline.on_revoked(gone)
            replica.partitions = []
        for i, replica in enumerate(self.replicas):
            mine = [p for p in range(PARTITIONS) if p % len(self.replicas) == i]
            replica.partitions = mine
            await replica.pipeline.on_assigned(replica.client.assign(mine))

    async def _new_replica(self) -> Replica:
        return Replica(f"r{next(self.replica_names)}", self.settings, self.store, self.broker, self)

    def _apply_control(
        self, target: Target, record: ControlRecord, replicas: list[Replica] | None = None
    ) -> None:
        async def apply() -> None:  # Pauses arms its `until` timer on the running loop
            for replica in self.replicas if replicas is None else replicas:
                replica.pauses.apply(target, record)

        self.run(apply())

    def _pauses(self) -> Pauses | None:
        return self.replicas[0].pauses if self.replicas else None

    # --- rules -----------------------------------------------------------------------------------

    @initialize()
    def start_first_replica(self) -> None:
        self.replicas.append(self.run(self._new_replica()))
        self.run(self._rebalance())

    @rule(order=st.sampled_from(ORDERS), connection=st.sampled_from(CONNECTIONS), count=st.integers(1, 4))
    def events_arrive(self, order: str, connection: str, count: int) -> None:
        partition = ORDERS.index(order) % PARTITIONS
        for _ in range(count):
            version = self.versions.get(order, 0) + 1
            self.versions[order] = version
            event = event_of(order, version, connection)
            self.broker.append(partition, order.encode(), orjson.dumps(event))
            self.produced[event["event_id"]] = connection

    @rule(
        action=st.sampled_from(("pause", "resume")),
        connection=st.sampled_from((None, *CONNECTIONS)),
        until_s=st.one_of(st.none(), st.floats(0.5, 20)),
    )
    def operator(self, action: str, connection: str | None, until_s: float | None) -> None:
        """`order-sync pause` (with or without `--until`) or `resume`, of the platform or a connection."""
        if action == "pause":
            self.pause(connection, until_s)
        else:
            self.resume(connection)

    def pause(self, connection: str | None, until_s: float | None) -> None:
        target = Target(platform=PLATFORM, connection=connection)
        until = self.clock() + timedelta(seconds=until_s) if until_s is not None else None
        record = ControlRecord(
            action=ControlAction.PAUSE, target=str(target), by="ops", at=self.clock(), reason="m", until=until
        )
        self._apply_control(target, record)
        self.paused_since.setdefault(target, self.loop.time())

    def resume(self, connection: str | None) -> None:
        target = Target(platform=PLATFORM, connection=connection)
        record = ControlRecord(action=ControlAction.RESUME, target=str(target), by="ops", at=self.clock())
        self._apply_control(target, record)

    @rule(connection=st.sampled_from(CONNECTIONS), down=st.booleans())
    def outage(self, connection: str, down: bool) -> None:
        """The connection's account starts or stops failing (its circuit opens, then closes)."""
        if down:
            self.platform.down.add(connection)
        else:
            self.platform.down.discard(connection)

    @rule(connection=st.sampled_from(CONNECTIONS), retry_after=st.floats(0.2, 5))
    def throttle(self, connection: str, retry_after: float) -> None:
        self.platform.throttle_next[connection] = retry_after

    @rule(change=st.sampled_from(("rebalance", "replica starts", "replica stops")))
    def group_change(self, change: str) -> None:
        """A rebalance; a replica starting (it joins); one stopping (another takes its partitions)."""
        if change == "replica starts" and len(self.replicas) < 2:
            self.replica_starts()
        elif change == "replica stops" and len(self.replicas) == 2:
            self.replica_stops()
        elif self.replicas:
            self.run(self._rebalance())

    def replica_starts(self) -> None:
        replica = self.run(self._new_replica())
        # A new replica reads the control topic before it takes work: the same pauses.
        source = self._pauses()
        if source is not None:
            for pause in source.all():
                record = ControlRecord(
                    action=ControlAction.PAUSE,
                    target=str(pause.target),
                    by=pause.by,
                    at=pause.at,
                    reason=pause.reason,
                    until=pause.until,
                )
                self._apply_control(pause.target, record, [replica])
        self.replicas.append(replica)
        self.run(self._rebalance())

    def replica_stops(self) -> None:
        leaving = self.replicas.pop(0)
        leaving.pipeline.request_stop()
        self.run(leaving.task)
        leaving.client.unassign()
        self.run(self._rebalance())

    @rule(seconds=st.sampled_from((0.05, 0.3, 1.0, 3.0, 10.0)))
    def time_passes(self, seconds: float) -> None:
        self.advance(seconds)

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def nothing_sent_to_a_paused_target(self) -> None:
        pauses = self._pauses()
        now = self.loop.time()
        for target in list(self.paused_since):
            if pauses is None or target not in {p.target for p in pauses.all()}:
                del self.paused_since[target]
        # A request already on its way when the pause applied may still land (10 ms here).
        for target, since in self.paused_since.items():
            late = [
                s
                for s in self.platform.sent
                if s.at > since + 0.011
                and s.at <= now
                and (target.connection is None or s.connection == target.connection)
            ]
            assert not late, f"sent to paused {target} after it applied at {since}: {late[:3]}"

    @invariant()
    def orders_applied_in_input_order(self) -> None:
        newest: dict[tuple[str, str], int] = {}
        for sent in self.platform.sent:
            key = (sent.connection, sent.order)
            assert sent.version >= newest.get(key, 0), f"{key} v{sent.version} after v{newest[key]}"
            newest[key] = sent.version

    @invariant()
    def held_backlog_matches_the_store(self) -> None:
        for replica in self.replicas:
            if replica.task.done() or not replica.partitions:
                continue
            lanes = {name: gate._lanes for name, gate in replica.gates._gates.items()}
            if any(lane.pending or lane.in_memory for c in lanes.values() for lane in c.values()):
                continue  # a write or a send under way: compared once it settles
            held = self.run(replica.parked.counts(PLATFORM, replica.partitions))
            counted = {
                (c, p): lane.backlog for c, by in lanes.items() for p, lane in by.items() if lane.backlog
            }
            assert counted == held, f"parking counts {counted}, the store holds {held}"

    # --- the end ---------------------------------------------------------------------------------

    @rule()
    def everything_clears_and_is_delivered(self) -> None:
        for connection in (None, *CONNECTIONS):
            self.resume(connection)
        self.platform.down.clear()
        self.platform.throttle_next.clear()
        if not self.replicas:
            self.replica_starts()
        deadline = self.loop.time() + SETTLE_S
        while self.loop.time() < deadline and len(self.results.published) < len(self.produced):
            self.advance(1.0)
        missing = sorted(set(self.produced) - set(self.results.published))
        assert not missing, (
            f"{len(missing)} of {len(self.produced)} deliveries not made {SETTLE_S:.0f} s after every "
            f"pause and fault ended: {missing[:5]}; committed {self.broker.committed}"
        )
        failed = {e: o for e, o in self.results.published.items() if o not in ("applied", "skipped_stale")}
        assert not failed, failed


TestHoldModel = HoldModel.TestCase
TestHoldModel.settings = settings(
    max_examples=300,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
