"""Calls the idempotency store, waiting out its outages instead of skipping deduplication."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from connector.errors import StoreUnavailableError
from connector.observability.metrics import Metrics
from connector.stores import IdempotencyStore

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class StoreGuard:
    """While the store does not answer, callers wait and retry; `up` is False (readiness follows)."""

    def __init__(self, store: IdempotencyStore, metrics: Metrics, max_backoff_s: float = 2.0) -> None:
        self.store = store
        self._metrics = metrics
        self._max_backoff = max_backoff_s
        self.up = True
        self._recovered = asyncio.Event()
        self._recovered.set()
        metrics.store_up.set(1)

    async def call(self, operation: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        delay = 0.05
        while True:
            try:
                result = await operation(*args, **kwargs)
            except StoreUnavailableError as exc:
                self._mark_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            self._mark_up()
            return result

    async def probe(self) -> bool:
        """Ping once; update `up`."""
        try:
            await self.store.ping()
        except StoreUnavailableError as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    def _mark_down(self, exc: StoreUnavailableError) -> None:
        if self.up:
            log.error("idempotency store unavailable; new work paused: %s", exc)
            self.up = False
            self._recovered.clear()
            self._metrics.store_up.set(0)

    def _mark_up(self) -> None:
        if not self.up:
            log.warning("idempotency store answers again; resuming")
            self.up = True
            self._recovered.set()
            self._metrics.store_up.set(1)
