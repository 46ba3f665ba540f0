"""`Pipeline`, `DeliveryStage` and `Gates` together, one example at a time, on virtual time.

The harness is the model-based test's (`test_hold_model.py`): the real classes of a platform's
pipeline over a memory store, with aiokafka's consumer replaced by a fake that keeps its semantics.
Each test drives one scenario and checks what the pipeline fetched, committed, parked and sent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline.test_hold_model import CONNECTIONS, ORDERS, PARTITIONS, HoldModel


@pytest.fixture
def world() -> Iterator[HoldModel]:
    model = HoldModel()
    model.start_first_replica()
    try:
        yield model
    finally:
        model._stop()


def sent_by_order(world: HoldModel, connection: str) -> dict[str, list[int]]:
    sent: dict[str, list[int]] = {}
    for s in world.platform.sent:
        if s.connection == connection:
            sent.setdefault(s.order, []).append(s.version)
    return sent


def log_end(world: HoldModel) -> dict[int, int]:
    return {p: len(world.broker.log[p]) for p in range(PARTITIONS) if world.broker.log[p]}


def test_events_are_delivered_in_order_per_order_and_committed_to_the_end(world: HoldModel) -> None:
    for order in ORDERS:
        world.events_arrive(order, "default", 3)
    world.advance(5)
    assert sent_by_order(world, "default") == {order: [1, 2, 3] for order in ORDERS}
    assert set(world.results.published.values()) == {"applied"}
    assert world.broker.committed == log_end(world)


def test_a_pause_of_the_platform_stops_fetching_and_its_end_delivers_what_waited(world: HoldModel) -> None:
    world.pause(None, until_s=None)
    world.advance(1)  # a fetch in flight when the pause came returns first (its records are parked)
    world.events_arrive("o1", "default", 2)
    world.events_arrive("o2", "eu", 2)
    world.advance(10)
    replica = world.replicas[0]
    assert world.platform.sent == []
    assert world.broker.committed == {}  # nothing fetched, nothing committed
    assert replica.gates.held_backlog() == {}  # not parked either: left in Kafka
    world.resume(None)
    world.advance(5)
    assert sent_by_order(world, "default") == {"o1": [1, 2]}
    assert sent_by_order(world, "eu") == {"o2": [1, 2]}
    assert world.broker.committed == log_end(world)


def test_a_paused_connection_parks_its_deliveries_and_the_others_commit_past_them(world: HoldModel) -> None:
    world.pause("eu", until_s=None)
    world.events_arrive("o1", "eu", 3)
    world.events_arrive("o1", "default", 2)  # the same partition, after eu's
    world.events_arrive("o2", "default", 2)
    world.advance(5)
    replica = world.replicas[0]
    assert sent_by_order(world, "default") == {"o1": [4, 5], "o2": [1, 2]}
    assert "eu" not in {s.connection for s in world.platform.sent}
    assert replica.gates.held_backlog() == {"eu": 3}
    # eu's deliveries wait in the store, not in the pipeline's window: every offset is committed.
    assert world.broker.committed == log_end(world)
    world.resume("eu")
    world.advance(5)
    assert sent_by_order(world, "eu") == {"o1": [1, 2, 3]}
    assert replica.gates.held_backlog() == {}


def test_a_stopped_replicas_backlog_is_drained_by_the_replica_that_takes_its_partitions(
    world: HoldModel,
) -> None:
    world.replica_starts()
    world.pause("eu", until_s=None)
    for order in ORDERS:
        world.events_arrive(order, "eu", 2)
    world.advance(5)
    assert sum(sum(r.gates.held_backlog().values()) for r in world.replicas) == 2 * len(ORDERS)
    world.replica_stops()
    survivor = world.replicas[0]
    assert survivor.gates.held_backlog() == {"eu": 2 * len(ORDERS)}  # learnt from the store
    world.resume("eu")
    world.advance(10)
    assert sent_by_order(world, "eu") == {order: [1, 2] for order in ORDERS}
    assert survivor.gates.held_backlog() == {}


def test_an_outage_parks_a_connection_and_its_recovery_drains_it_in_order(world: HoldModel) -> None:
    down, up = CONNECTIONS[1], CONNECTIONS[0]
    world.outage(down, True)
    world.events_arrive("o1", down, 4)
    world.events_arrive("o2", up, 2)
    world.advance(20)
    assert sent_by_order(world, up) == {"o2": [1, 2]}
    assert world.replicas[0].gates.held_backlog().get(down, 0) >= 1
    recovered_at = len(world.platform.sent)  # every request to it so far failed
    world.outage(down, False)
    world.advance(30)
    after = [s.version for s in world.platform.sent[recovered_at:] if s.connection == down]
    assert after == sorted(after) and set(after) == {1, 2, 3, 4}, after
    assert {e: o for e, o in world.results.published.items() if e.startswith("o1-")} == {
        f"o1-v{v}": "applied" for v in (1, 2, 3, 4)
    }
    assert world.broker.committed == log_end(world)
