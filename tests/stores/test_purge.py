"""The retention task: bounded passes, prompt stop, failures reported and survived."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from connector.errors import StoreUnavailableError
from connector.models import Outcome, Platform
from connector.stores.base import ClaimStatus, DeliveryKey
from connector.stores.memory import MemoryStore
from connector.stores.purge import run_purger

TINY_RETENTION_H = 1e-9  # anything written before the round started is old


class RecordingStore(MemoryStore):
    """A memory store that remembers each purge call, and can fail the first ones."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.passes: list[tuple[int, int]] = []
        self.failures = failures
        self._passed = asyncio.Condition()

    async def purge(self, older_than: datetime, limit: int) -> int:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("store down")
        removed = await super().purge(older_than, limit)
        async with self._passed:
            self.passes.append((limit, removed))
            self._passed.notify_all()
        return removed

    async def wait_for_passes(self, count: int) -> None:
        async with asyncio.timeout(5), self._passed:
            await self._passed.wait_for(lambda: len(self.passes) >= count)


async def fill(store: MemoryStore, deliveries: int) -> list[DeliveryKey]:
    keys = [
        DeliveryKey(f"evt-{uuid.uuid4()}", Platform.VUCUSTOM, "ord-1", n) for n in range(1, deliveries + 1)
    ]
    for key in keys:
        await store.record_outcome(key, Outcome.APPLIED, b"result")
    await store.mark_reported(keys)
    return keys


async def test_backlog_is_worked_off_in_passes_of_at_most_batch() -> None:
    store = RecordingStore()
    keys = await fill(store, 7)
    await asyncio.sleep(0.001)
    stop = asyncio.Event()

    task = asyncio.create_task(run_purger(store, TINY_RETENTION_H, 3600, 3, stop))
    await store.wait_for_passes(3)
    stop.set()
    await asyncio.wait_for(task, 1)

    assert store.passes == [(3, 3), (3, 3), (3, 1)]
    assert (await store.claim(keys[0], "a", 60)).status is ClaimStatus.STALE  # forgotten; version kept


async def test_recent_records_are_kept() -> None:
    store = RecordingStore()
    keys = await fill(store, 2)
    stop = asyncio.Event()

    task = asyncio.create_task(run_purger(store, 1.0, 3600, 10, stop))
    await store.wait_for_passes(1)
    stop.set()
    await asyncio.wait_for(task, 1)

    assert store.passes == [(10, 0)]
    assert (await store.claim(keys[0], "a", 60)).status is ClaimStatus.DUPLICATE


async def test_a_failed_round_is_reported_and_retried_next_interval() -> None:
    store = RecordingStore(failures=2)
    errors: list[StoreUnavailableError] = []
    stop = asyncio.Event()

    task = asyncio.create_task(run_purger(store, 1.0, 0.01, 10, stop, on_error=errors.append))
    await store.wait_for_passes(1)
    stop.set()
    await asyncio.wait_for(task, 1)

    assert [str(error) for error in errors] == ["store down", "store down"]


async def test_stop_ends_the_wait_between_rounds_at_once() -> None:
    store = RecordingStore()
    stop = asyncio.Event()
    task = asyncio.create_task(run_purger(store, 1.0, 3600, 10, stop))
    await store.wait_for_passes(1)

    stop.set()

    await asyncio.wait_for(task, 0.5)
