"""The idempotency stores: which deliveries reached an outcome, and the newest version applied per platform.

- `base.py`: the store interface and its records; `memory.py`, `sqlite.py`, `redis.py`, `postgres.py`:
  the backends; `factory.py`: the backend a URL names; `purge.py`: retention.
- `guard.py`: store outages (work waits, readiness goes false, nothing skips deduplication).
"""

from connector.stores.base import (
    Claim,
    ClaimStatus,
    DeliveryKey,
    DeliveryState,
    IdempotencyStore,
    OrderRecords,
    ParkedDelivery,
)
from connector.stores.factory import open_store

__all__ = [
    "Claim",
    "ClaimStatus",
    "DeliveryKey",
    "DeliveryState",
    "IdempotencyStore",
    "OrderRecords",
    "ParkedDelivery",
    "open_store",
]
