"""StoreGuard: callers wait out a store outage, and `up` and `order_sync_store_up` change together."""

from __future__ import annotations

import asyncio

import pytest

from connector.errors import StoreUnavailableError
from connector.observability.metrics import Metrics
from connector.stores.guard import StoreGuard
from connector.stores.memory import MemoryStore


class FlakyStore(MemoryStore):
    """A store whose `ping` fails while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def ping(self) -> None:
        if self.down:
            raise StoreUnavailableError("store down (test)")


def store_up(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("order_sync_store_up")


async def test_a_call_waits_out_an_outage_and_returns_the_answer() -> None:
    metrics = Metrics()
    guard = StoreGuard(FlakyStore(), metrics, first_backoff_s=0.001, max_backoff_s=0.004)
    failures = 3
    calls = 0

    async def operation(value: int) -> int:
        nonlocal calls
        calls += 1
        if calls <= failures:
            # While the store is down, the guard reports it down.
            assert calls == 1 or (not guard.up and store_up(metrics) == 0)
            raise StoreUnavailableError("down")
        return value * 2

    assert await asyncio.wait_for(guard.call(operation, 21), timeout=5) == 42
    assert calls == failures + 1
    assert guard.up
    assert store_up(metrics) == 1


async def test_errors_other_than_an_outage_are_not_retried() -> None:
    guard = StoreGuard(FlakyStore(), Metrics())
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await guard.call(operation)
    assert calls == 1
    assert guard.up


async def test_probe_follows_the_store_and_the_gauge_follows_the_guard() -> None:
    metrics = Metrics()
    store = FlakyStore()
    guard = StoreGuard(store, metrics)
    assert store_up(metrics) == 1

    store.down = True
    assert await guard.probe() is False
    assert (guard.up, store_up(metrics)) == (False, 0)

    store.down = False
    assert await guard.probe() is True
    assert (guard.up, store_up(metrics)) == (True, 1)


def test_marking_down_and_up_updates_the_gauge() -> None:
    # app.py marks the store down and up at start-up through these; the gauge must follow.
    metrics = Metrics()
    guard = StoreGuard(MemoryStore(), metrics)
    guard.mark_down(StoreUnavailableError("refused"))
    assert (guard.up, store_up(metrics)) == (False, 0)
    guard.mark_up()
    assert (guard.up, store_up(metrics)) == (True, 1)
