from __future__ import annotations

import asyncio
import random

import pytest

from connector.delivery.lanes import LaneTicket, OrderingLanes, await_shielded


async def test_same_key_runs_in_ticket_order_while_other_keys_overlap() -> None:
    lanes = OrderingLanes()
    log: list[tuple[str, int]] = []
    running: dict[str, int] = {}
    overlap_seen = asyncio.Event()

    async def work(key: str, index: int) -> None:
        ticket = lanes.take(key)
        await asyncio.sleep(0)
        try:
            await ticket.wait_turn()
            running[key] = running.get(key, 0) + 1
            assert running[key] == 1, "two deliveries of one key ran at once"
            if sum(1 for v in running.values() if v) > 1:
                overlap_seen.set()
            await asyncio.sleep(random.uniform(0, 0.005))
            log.append((key, index))
            running[key] -= 1
        finally:
            ticket.finish()

    tasks = []
    for index in range(30):
        for key in ("a", "b", "c"):
            tasks.append(asyncio.ensure_future(work(key, index)))
    await asyncio.gather(*tasks)
    for key in ("a", "b", "c"):
        assert [i for k, i in log if k == key] == list(range(30))
    assert overlap_seen.is_set()
    assert len(lanes) == 0


async def test_cancelled_delivery_lets_the_next_one_go() -> None:
    lanes = OrderingLanes()
    first = lanes.take("k")
    second = lanes.take("k")
    blocked = asyncio.ensure_future(second.wait_turn())
    await asyncio.sleep(0)
    assert not blocked.done()
    first.finish()
    await asyncio.wait_for(blocked, timeout=1)
    second.finish()
    assert len(lanes) == 0


async def test_a_ticket_finished_before_its_turn_does_not_let_later_ones_overtake() -> None:
    lanes = OrderingLanes()
    first, skipped, last = lanes.take("k"), lanes.take("k"), lanes.take("k")
    skipped.finish()  # e.g. its event went to the DLQ while `first` is still delivering
    waiting = asyncio.ensure_future(last.wait_turn())
    await asyncio.sleep(0.01)
    assert not waiting.done(), "a later delivery overtook an earlier one still running"
    first.finish()
    await asyncio.wait_for(waiting, 1)
    last.finish()
    assert len(lanes) == 0


async def test_a_cancelled_waiter_leaves_the_future_it_waited_for_alone() -> None:
    loop = asyncio.get_running_loop()
    shared: asyncio.Future[int] = loop.create_future()
    stopped = asyncio.ensure_future(await_shielded(shared))
    kept = asyncio.ensure_future(await_shielded(shared))
    await asyncio.sleep(0)
    stopped.cancel()
    await asyncio.sleep(0)
    assert stopped.cancelled() and not shared.cancelled()
    shared.set_result(7)
    assert await asyncio.wait_for(kept, 1) == 7


async def test_a_waiter_gets_the_exception_of_the_future_it_waited_for() -> None:
    shared: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(await_shielded(shared))
    await asyncio.sleep(0)
    shared.set_exception(KeyError("gone"))
    with pytest.raises(KeyError):
        await asyncio.wait_for(waiting, 1)


async def test_a_lane_keeps_its_unfinished_tickets_only() -> None:
    lanes = OrderingLanes()
    tickets = [lanes.take("k") for _ in range(3)]
    tickets[0].finish()
    tickets[1].finish()
    # The last ticket no longer leads back to the finished ones: a busy order holds no history.
    assert tickets[2]._previous is tickets[1] and tickets[1]._previous is None
    await asyncio.wait_for(tickets[2].wait_turn(), 1)
    tickets[2].finish()
    assert len(lanes) == 0


async def test_a_waiter_that_gave_up_leaves_nothing_on_the_future() -> None:
    shared: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    for _ in range(3):
        waiting = asyncio.ensure_future(await_shielded(shared))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.sleep(0)
    # Nothing of the three waiters is left on it: a shared check waited for again and again
    # (a retried delivery) does not pile callbacks up.
    assert len(shared._callbacks or []) == 0  # type: ignore[attr-defined]
    shared.set_result(1)


def test_a_ticket_finishes_where_no_loop_runs() -> None:
    """A delivery's coroutine closed once its loop stopped running finishes its ticket in `finally`."""
    loop = asyncio.new_event_loop()
    try:

        async def take() -> tuple[LaneTicket, LaneTicket]:
            lanes = OrderingLanes()
            return lanes.take("k"), lanes.take("k")

        first, second = loop.run_until_complete(take())
        second.finish()  # its turn never came: it hands its place on after the first's
        first.finish()
        loop.run_until_complete(asyncio.sleep(0))
        assert second._finished
    finally:
        loop.close()
