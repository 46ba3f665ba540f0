"""Calls the idempotency store, waiting out its outages instead of skipping deduplication."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from connector.errors import StoreUnavailableError
from connector.observability.metrics import Metrics
from connector.policies.backoff import Backoff
from connector.stores.base import IdempotencyStore

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class StoreGuard:
    """While the store does not answer, callers wait and retry; `up` is False (readiness follows).

    The one owner of the store's state: `up` and the `order_sync_store_up` gauge change together,
    through `mark_down` and `mark_up`, whoever saw the store fail or answer.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        metrics: Metrics,
        first_backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._first_backoff = first_backoff_s
        self._max_backoff = max_backoff_s
        self._up = True
        metrics.store_up.set(1)

    @property
    def up(self) -> bool:
        return self._up

    async def call(self, operation: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        backoff = Backoff(self._first_backoff, self._max_backoff)
        while True:
            try:
                result = await operation(*args, **kwargs)
            except StoreUnavailableError as exc:
                self.mark_down(exc)
                await backoff.wait()
                continue
            self.mark_up()
            return result

    async def probe(self) -> bool:
        """Ping once; update `up`."""
        try:
            await self.store.ping()
        except StoreUnavailableError as exc:
            self.mark_down(exc)
            return False
        self.mark_up()
        return True

    def mark_down(self, exc: StoreUnavailableError) -> None:
        if self._up:
            log.error("idempotency store unavailable; new work paused: %s", exc)
            self._up = False
            self._metrics.store_up.set(0)

    def mark_up(self) -> None:
        if not self._up:
            log.warning("idempotency store answers again; resuming")
            self._up = True
            self._metrics.store_up.set(1)
