"""Idempotency tracking: which deliveries reached an outcome, and the newest version applied per platform."""

from connector.idempotency.base import (
    Claim,
    ClaimStatus,
    DeliveryKey,
    DeliveryState,
    IdempotencyStore,
    OrderRecords,
)
from connector.idempotency.factory import open_store

__all__ = [
    "Claim",
    "ClaimStatus",
    "DeliveryKey",
    "DeliveryState",
    "IdempotencyStore",
    "OrderRecords",
    "open_store",
]
