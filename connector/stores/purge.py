"""The retention task: deletes records older than the retention, a bounded batch at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from connector.errors import StoreUnavailableError
from connector.stores.base import IdempotencyStore

log = logging.getLogger(__name__)


def _log_error(exc: StoreUnavailableError) -> None:
    log.warning("retention purge skipped until the next interval: %s", exc)


async def run_purger(
    store: IdempotencyStore,
    retention_hours: float,
    interval_s: float,
    batch: int,
    stop: asyncio.Event,
    on_error: Callable[[StoreUnavailableError], None] = _log_error,
) -> None:
    """Purge now and then every `interval_s` until `stop` is set.

    A round fixes its cutoff (now minus the retention) and calls `store.purge` in passes of at most
    `batch` records until a pass comes back short, so a large backlog is worked off without holding
    the store for long; other operations run between passes. A round that fails is reported to
    `on_error` and retried at the next interval. Returns promptly once `stop` is set.
    """
    retention = timedelta(hours=retention_hours)
    while not stop.is_set():
        try:
            removed = await _purge_round(store, datetime.now(UTC) - retention, batch, stop)
        except StoreUnavailableError as exc:
            on_error(exc)
        else:
            if removed:
                log.info("retention purge removed %d records", removed)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await stop.wait()


async def _purge_round(store: IdempotencyStore, cutoff: datetime, batch: int, stop: asyncio.Event) -> int:
    removed = 0
    while not stop.is_set():
        count = await store.purge(cutoff, batch)
        removed += count
        if count < batch:
            break
        await asyncio.sleep(0)
    return removed
