"""The store interface every backend implements, and the semantics they share.

Per delivery `(event_id, platform)` the store keeps a state:

    (none) --claim--> CLAIMED --record_outcome--> DONE --mark_reported--> REPORTED
                        |  ^
                        |  +-- claim by another owner after the lease expired (crash recovery)
                        +-- release (work abandoned, e.g. cancelled on rebalance) --> (none)

and per `(order_number, platform)` the highest version applied. `claim` answers, atomically:

- REPORTED exists             -> DUPLICATE (nothing to do, no result)
- DONE but not reported       -> UNREPORTED with the stored result bytes (publish them, no request)
- CLAIMED by another owner whose lease has not expired -> BUSY (ask again later)
- version <= applied version  -> STALE (the delivery is claimed; record `skipped_stale` next)
- otherwise                   -> PROCEED (claimed by this owner: send the request)

`record_outcome` stores the result and, for `applied`, raises the applied version, in one
atomic step. Every method raises `StoreUnavailableError` when the backend does not answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connector.models import Outcome, Platform


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    event_id: str
    platform: Platform
    order_number: str
    version: int


class ClaimStatus(StrEnum):
    PROCEED = "proceed"
    DUPLICATE = "duplicate"
    UNREPORTED = "unreported"
    STALE = "stale"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Claim:
    status: ClaimStatus
    #: With UNREPORTED: the result event recorded earlier, as published bytes.
    result: bytes | None = None
    #: With STALE: the version already applied on the platform.
    applied_version: int | None = None


class IdempotencyStore(ABC):
    """Backends: SQLite (embedded default), Redis, PostgreSQL; chosen by URL scheme."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and create what is missing (tables, scripts). Raise `StoreUnavailableError`."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise `StoreUnavailableError` unless the backend answers now."""

    @abstractmethod
    async def check_event(self, event_id: str, fingerprint: str) -> bool:
        """Remember the event's content fingerprint on first sight; False when a different one is stored."""

    @abstractmethod
    async def claim(self, key: DeliveryKey, owner: str, lease_s: float) -> Claim: ...

    @abstractmethod
    async def record_outcome(self, key: DeliveryKey, outcome: Outcome, result: bytes) -> None: ...

    @abstractmethod
    async def mark_reported(self, keys: list[DeliveryKey]) -> None: ...

    @abstractmethod
    async def release(self, key: DeliveryKey, owner: str) -> None:
        """Drop this owner's claim if it has no outcome yet (work abandoned before the request finished)."""

    @abstractmethod
    async def purge(self, older_than: datetime, limit: int) -> int:
        """Delete at most `limit` delivery and event records last touched before `older_than`; return how many.

        Applied versions are kept (they are one row per order and platform and guard against stale replays).
        """
