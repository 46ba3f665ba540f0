"""An in-process store: the reference semantics, for unit tests and benchmarks (`memory://`).

Not shared between processes and lost on restart; never use it where replicas or restarts matter.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.models import Outcome, Platform
from connector.stores.base import (
    Claim,
    ClaimStatus,
    DeliveryKey,
    DeliveryState,
    IdempotencyStore,
    OrderRecords,
    ParkedDelivery,
)


@dataclass(slots=True)
class _Record:
    owner: str | None
    claimed_at: float
    touched_at: datetime
    outcome: Outcome | None = None
    result: bytes | None = None
    reported: bool = False


class MemoryStore(IdempotencyStore):
    def __init__(self) -> None:
        self._deliveries: dict[tuple[str, Platform], _Record] = {}
        self._events: dict[str, tuple[str, datetime]] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._parked: dict[tuple[str, Platform], ParkedDelivery] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def check_event(self, event_id: str, fingerprint: str) -> bool:
        known = self._events.get(event_id)
        if known is None:
            self._events[event_id] = (fingerprint, datetime.now(UTC))
            return True
        return known[0] == fingerprint

    async def claim(self, key: DeliveryKey, owner: str, lease_s: float) -> Claim:
        now = time.time()
        record = self._deliveries.get((key.event_id, key.platform))
        if record is not None:
            if record.reported:
                return Claim(ClaimStatus.DUPLICATE)
            if record.outcome is not None:
                return Claim(ClaimStatus.UNREPORTED, result=record.result)
            if record.owner != owner and now - record.claimed_at < lease_s:
                return Claim(ClaimStatus.BUSY)
        self._deliveries[(key.event_id, key.platform)] = _Record(owner, now, datetime.now(UTC))
        applied = self._versions.get((key.order_number, key.target))
        if applied is not None and key.version <= applied:
            return Claim(ClaimStatus.STALE, applied_version=applied)
        return Claim(ClaimStatus.PROCEED)

    async def record_outcome(
        self, key: DeliveryKey, outcome: Outcome, result: bytes, *, reported: bool = False
    ) -> None:
        record = self._deliveries.setdefault(
            (key.event_id, key.platform), _Record(None, time.time(), datetime.now(UTC))
        )
        record.outcome, record.touched_at = outcome, datetime.now(UTC)
        record.reported = record.reported or reported
        record.result = None if record.reported else result
        if outcome is Outcome.APPLIED:
            version_key = (key.order_number, key.target)
            self._versions[version_key] = max(key.version, self._versions.get(version_key, key.version))

    async def order_records(self, order_number: str, event_ids: Sequence[str]) -> OrderRecords:
        applied = {target: v for (order, target), v in self._versions.items() if order == order_number}
        deliveries = {}
        for event_id in event_ids:
            for platform in Platform:
                record = self._deliveries.get((event_id, platform))
                if record is None:
                    continue
                if record.reported:
                    deliveries[(event_id, platform)] = DeliveryState.REPORTED
                elif record.outcome is not None:
                    deliveries[(event_id, platform)] = DeliveryState.DONE
                else:
                    deliveries[(event_id, platform)] = DeliveryState.CLAIMED
        parked = frozenset(
            (event_id, platform)
            for event_id in event_ids
            for platform in Platform
            if (event_id, platform) in self._parked
        )
        return OrderRecords(applied, deliveries, parked)

    async def mark_reported(self, keys: list[DeliveryKey]) -> None:
        for key in keys:
            record = self._deliveries.get((key.event_id, key.platform))
            if record is not None:
                record.reported = True
                record.result = None
                record.touched_at = datetime.now(UTC)

    async def park(self, items: Sequence[ParkedDelivery]) -> None:
        for item in items:
            self._parked.setdefault((item.event_id, item.platform), item)

    async def parked(
        self, platform: Platform, connection: str, partitions: Sequence[int], limit: int
    ) -> list[ParkedDelivery]:
        wanted = set(partitions)
        found = [
            item
            for item in self._parked.values()
            if item.platform is platform and item.connection == connection and item.partition in wanted
        ]
        return sorted(found, key=lambda item: (item.partition, item.offset))[:limit]

    async def unpark(self, items: Sequence[ParkedDelivery]) -> None:
        for item in items:
            self._parked.pop((item.event_id, item.platform), None)

    async def parked_counts(
        self, platform: Platform, partitions: Sequence[int]
    ) -> dict[tuple[str, int], int]:
        wanted = set(partitions)
        counts: dict[tuple[str, int], int] = {}
        for item in self._parked.values():
            if item.platform is platform and item.partition in wanted:
                counts[(item.connection, item.partition)] = (
                    counts.get((item.connection, item.partition), 0) + 1
                )
        return counts

    async def release(self, key: DeliveryKey, owner: str) -> None:
        record = self._deliveries.get((key.event_id, key.platform))
        if record is not None and record.outcome is None and not record.reported and record.owner == owner:
            del self._deliveries[(key.event_id, key.platform)]

    async def purge(self, older_than: datetime, limit: int) -> int:
        removed = 0
        for delivery_key in [k for k, r in self._deliveries.items() if r.touched_at < older_than][:limit]:
            del self._deliveries[delivery_key]
            removed += 1
        for event_id in [k for k, (_, t) in self._events.items() if t < older_than][: limit - removed]:
            del self._events[event_id]
            removed += 1
        return removed
