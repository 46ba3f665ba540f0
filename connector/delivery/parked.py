"""The parked deliveries in the idempotency store, as the gates use them (README "Isolation between
connections"): written when parked, read a page at a time by the drain, counted per partition when
one is assigned, removed once sent. Writes and removals are coalesced (`stores/batching.py`), and
every call waits out a store outage (`stores/guard.py`).
"""

from __future__ import annotations

from connector.models import Platform
from connector.stores import ParkedDelivery
from connector.stores.batching import Coalescer, written
from connector.stores.guard import StoreGuard


class ParkedStore:
    def __init__(self, guard: StoreGuard) -> None:
        self._guard = guard
        self._store = guard.store
        self._parks: Coalescer[ParkedDelivery, None] = Coalescer(written(guard.store.park))
        self._unparks: Coalescer[ParkedDelivery, None] = Coalescer(written(guard.store.unpark))

    async def park(self, item: ParkedDelivery) -> None:
        """Keep `item` in the store until `unpark`; returns once the store holds it."""
        await self._guard.call(self._parks.submit, item)

    async def unpark(self, item: ParkedDelivery) -> None:
        await self._guard.call(self._unparks.submit, item)

    async def page(
        self, platform: Platform, connection: str, partitions: list[int], limit: int
    ) -> list[ParkedDelivery]:
        """The oldest `limit` parked deliveries of the connection on `partitions`, by offset."""
        return await self._guard.call(self._store.parked, platform, connection, partitions, limit)

    async def counts(self, platform: Platform, partitions: list[int]) -> dict[tuple[str, int], int]:
        """Parked deliveries per (connection, partition)."""
        return await self._guard.call(self._store.parked_counts, platform, partitions)
