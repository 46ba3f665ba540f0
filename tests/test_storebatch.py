"""The coalescer behind the delivery path's store calls: who goes in which batch, and what each
caller gets back when a batch succeeds, fails or a caller stops waiting."""

from __future__ import annotations

import asyncio

import pytest

from connector.errors import StoreUnavailableError
from connector.stores.batching import Coalescer


class FakeStore:
    """A batch call that answers `item * 10` once `release` is set, recording every batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_with: Exception | None = None
        self._arrived = asyncio.Event()

    async def call(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self._arrived.set()
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 10 for item in items]

    async def batches_reach(self, count: int, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.batches) < count:
                self._arrived.clear()
                await self._arrived.wait()


async def test_a_lone_call_goes_at_once_and_alone() -> None:
    store = FakeStore()
    coalescer = Coalescer(store.call)

    assert await coalescer.submit(7) == 70
    assert store.batches == [[7]]


async def test_calls_made_while_a_batch_is_out_go_together_next() -> None:
    store = FakeStore()
    store.release.clear()
    coalescer = Coalescer(store.call)

    first = asyncio.ensure_future(coalescer.submit(1))
    await store.batches_reach(1)
    assert store.batches == [[1]]
    rest = [asyncio.ensure_future(coalescer.submit(n)) for n in range(2, 12)]
    await asyncio.sleep(0)
    store.release.set()

    assert await first == 10
    assert await asyncio.gather(*rest) == [n * 10 for n in range(2, 12)]
    assert store.batches == [[1], list(range(2, 12))]


async def test_batches_hold_at_most_max_batch_calls_in_order() -> None:
    store = FakeStore()
    store.release.clear()
    coalescer = Coalescer(store.call, max_batch=4)

    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(10)]
    await store.batches_reach(1)
    store.release.set()

    assert await asyncio.gather(*calls) == [n * 10 for n in range(10)]
    assert store.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_a_failed_batch_fails_each_caller_with_an_error_of_its_own() -> None:
    store = FakeStore()
    store.release.clear()
    store.fail_with = StoreUnavailableError("sqlite at x: claim timed out after 5s")
    coalescer = Coalescer(store.call)

    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(3)]
    await store.batches_reach(1)
    store.release.set()
    errors = await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(e, StoreUnavailableError) for e in errors)
    assert len({id(e) for e in errors}) == 3
    assert {str(e) for e in errors} == {"sqlite at x: claim timed out after 5s"}
    # The coalescer goes on after a failure.
    store.fail_with = None
    assert await coalescer.submit(5) == 50


async def test_a_caller_that_stopped_waiting_is_left_out_of_the_next_batch() -> None:
    store = FakeStore()
    store.release.clear()
    coalescer = Coalescer(store.call)

    first = asyncio.ensure_future(coalescer.submit(1))
    await store.batches_reach(1)
    gone = asyncio.ensure_future(coalescer.submit(2))
    kept = asyncio.ensure_future(coalescer.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    store.release.set()

    assert await first == 10
    assert await kept == 30
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert store.batches == [[1], [3]]
