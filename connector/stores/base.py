"""The store interface every backend implements, and the semantics they share.

Per delivery `(event_id, platform)` the store keeps a state:

    (none) --claim--> CLAIMED --record_outcome--> DONE --mark_reported--> REPORTED
                        +--record_outcome(reported=True) (result already acknowledged)-> REPORTED
                        |  ^
                        |  +-- claim by another owner after the lease expired (crash recovery)
                        +-- release (work abandoned, e.g. cancelled on rebalance) --> (none)

and per `(order_number, target)` the highest version applied, where the target is the platform's
connection (`DeliveryKey.target`: `sellercloud` for its `default` connection, `sellercloud/eu` for
another), so the stale guard of one account never skips a change for another. `claim` answers, atomically:

- REPORTED exists             -> DUPLICATE (nothing to do, no result)
- DONE but not reported       -> UNREPORTED with the stored result bytes (publish them, no request)
- CLAIMED by another owner whose lease has not expired -> BUSY (ask again later)
- version <= applied version  -> STALE (the delivery is claimed; record `skipped_stale` next)
- otherwise                   -> PROCEED (claimed by this owner: send the request)

`record_outcome` stores the result and, for `applied`, raises the applied version, in one
atomic step. Every method raises `StoreUnavailableError` when the backend does not answer.

Details every backend keeps alike (the contract tests in tests/stores check them):

- A lease is fresh while `now - claimed_at < lease_s`, with `lease_s` the caller's. Where the store
  is shared (Redis, PostgreSQL), `now` is the server's clock, so replicas' clock skew does not matter.
- Claiming again by the same owner renews its lease; a STALE answer holds the claim like PROCEED.
- `record_outcome` takes no owner: after a lease takeover both owners may record, and the last
  outcome wins. On a REPORTED delivery it changes nothing visible (it stays REPORTED).
- `mark_reported` ignores keys the store does not hold, and counts as touching the record.
- "Touched" means the last claim, outcome or report; an event record is touched when first seen.
- All retries of a call by the same caller are safe: every method is idempotent for one owner.

The batch methods (`check_events`, `claim_many`, `record_outcomes`, and `mark_reported`, which
always took a list) answer as if their items ran one after another in list order. The defaults
below call the single-item methods, concurrently when no two items touch the same record; a backend
overrides them when one round trip, or one transaction, can do a whole batch, and then derives from
`BatchedStore`, whose single calls are batches of one: SQLite runs each kind as a few statements in
one transaction, Redis pipelines its scripts, PostgreSQL pipelines one statement per item in one
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from connector.errors import StoreUnavailableError
from connector.models import DEFAULT_CONNECTION, Outcome, Platform

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    event_id: str
    platform: Platform
    order_number: str
    version: int
    connection: str = DEFAULT_CONNECTION

    @property
    def target(self) -> str:
        """What the applied version is kept per: the platform for its `default` connection (as
        stored before connections existed), `platform/connection` for any other."""
        if self.connection == DEFAULT_CONNECTION:
            return self.platform.value
        return f"{self.platform.value}/{self.connection}"


class DeliveryState(StrEnum):
    """Where one delivery stands in the store (the diagram above); absent means never claimed."""

    CLAIMED = "claimed"
    DONE = "done"
    REPORTED = "reported"


class ClaimStatus(StrEnum):
    PROCEED = "proceed"
    DUPLICATE = "duplicate"
    UNREPORTED = "unreported"
    STALE = "stale"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class OrderRecords:
    """What the store holds about one order, for operators (`order-sync history`)."""

    #: The newest version applied, per target (`DeliveryKey.target`) that has one.
    applied: dict[str, int]
    #: Where each asked-for delivery stands; a delivery the store does not hold is absent.
    deliveries: dict[tuple[str, Platform], DeliveryState]
    #: The asked-for deliveries (`event_id`, platform) parked right now.
    parked: frozenset[tuple[str, Platform]] = frozenset()


@dataclass(frozen=True, slots=True)
class ParkedDelivery:
    """A delivery waiting in the store for its held connection (README "Isolation between
    connections"): the input record it came from, whole, so it can be built again when it is sent
    (with the connection's settings of that moment), and where it came from, for its order."""

    event_id: str
    platform: Platform
    connection: str
    topic: str
    partition: int
    offset: int
    #: The input record's value, as consumed.
    value: bytes
    #: The input record's `traceparent`, when it had one.
    traceparent: str | None = None


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
    async def record_outcome(
        self, key: DeliveryKey, outcome: Outcome, result: bytes, *, reported: bool = False
    ) -> None:
        """Store the outcome (DONE, keeping `result`) and, for `applied`, raise the applied version.

        With `reported`, Kafka has already acknowledged the result: the delivery goes straight to
        REPORTED (the result is not kept), in the same atomic step.
        """

    @abstractmethod
    async def mark_reported(self, keys: list[DeliveryKey]) -> None: ...

    @abstractmethod
    async def order_records(self, order_number: str, event_ids: Sequence[str]) -> OrderRecords:
        """Read only: the order's applied versions and the states of the given events' deliveries."""

    async def check_events(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        """`check_event` for each `(event_id, fingerprint)`."""
        return await _each(items, lambda item: (item[0],), lambda item: self.check_event(*item))

    async def claim_many(self, keys: Sequence[DeliveryKey], owner: str, lease_s: float) -> list[Claim]:
        """`claim` for each key."""
        return await _each(keys, _records_of, lambda key: self.claim(key, owner, lease_s))

    async def record_outcomes(
        self, items: Sequence[tuple[DeliveryKey, Outcome, bytes]], *, reported: bool = False
    ) -> None:
        """`record_outcome` for each `(key, outcome, result)`."""
        await _each(
            items,
            lambda item: _records_of(item[0]),
            lambda item: self.record_outcome(*item, reported=reported),
        )

    @abstractmethod
    async def park(self, items: Sequence[ParkedDelivery]) -> None:
        """Keep these deliveries until `unpark`; one already parked (same `event_id` and platform)
        is left as it is, so a record consumed again after a crash is parked once."""

    @abstractmethod
    async def parked(
        self, platform: Platform, connection: str, partitions: Sequence[int], limit: int
    ) -> list[ParkedDelivery]:
        """At most `limit` of the connection's parked deliveries from `partitions`, in input order
        within each partition (by offset; partitions in ascending order)."""

    @abstractmethod
    async def unpark(self, items: Sequence[ParkedDelivery]) -> None:
        """Forget these parked deliveries (sent, or ended otherwise); absent ones are ignored."""

    @abstractmethod
    async def parked_counts(
        self, platform: Platform, partitions: Sequence[int]
    ) -> dict[tuple[str, int], int]:
        """How many deliveries are parked, per `(connection, partition)` that has any, for `partitions`."""

    @abstractmethod
    async def release(self, key: DeliveryKey, owner: str) -> None:
        """Drop this owner's claim if it has no outcome yet (work abandoned before the request finished)."""

    @abstractmethod
    async def purge(self, older_than: datetime, limit: int) -> int:
        """Delete at most `limit` delivery and event records last touched before `older_than` (aware).

        Returns how many were deleted. Applied versions are kept (they are one row per order and
        platform and guard against stale replays), and so are parked deliveries (work not done). A
        backend that expires records by itself after its retention (Redis key TTLs) deletes nothing
        here and returns 0.
        """


class BatchedStore(IdempotencyStore):
    """A backend whose batch methods are its own primitives: a single call is a batch of one."""

    async def check_event(self, event_id: str, fingerprint: str) -> bool:
        return (await self.check_events([(event_id, fingerprint)]))[0]

    async def claim(self, key: DeliveryKey, owner: str, lease_s: float) -> Claim:
        return (await self.claim_many([key], owner, lease_s))[0]

    async def record_outcome(
        self, key: DeliveryKey, outcome: Outcome, result: bytes, *, reported: bool = False
    ) -> None:
        await self.record_outcomes([(key, outcome, result)], reported=reported)

    @abstractmethod
    async def check_events(self, items: Sequence[tuple[str, str]]) -> list[bool]: ...

    @abstractmethod
    async def claim_many(self, keys: Sequence[DeliveryKey], owner: str, lease_s: float) -> list[Claim]: ...

    @abstractmethod
    async def record_outcomes(
        self, items: Sequence[tuple[DeliveryKey, Outcome, bytes]], *, reported: bool = False
    ) -> None: ...


def _records_of(key: DeliveryKey) -> tuple[Hashable, ...]:
    # A claim reads, and an outcome writes, the delivery's record and its order's applied version.
    return ("delivery", key.event_id, key.platform), ("applied", key.order_number, key.platform)


async def _each(
    items: Sequence[T],
    records: Callable[[T], tuple[Hashable, ...]],
    call: Callable[[T], Awaitable[Any]],
) -> list[Any]:
    """Run `call` for every item: all at once when no two share a record, else one after another."""
    touched = [record for item in items for record in records(item)]
    if len(set(touched)) == len(touched):
        return list(await asyncio.gather(*(call(item) for item in items)))
    return [await call(item) for item in items]


@contextlib.asynccontextmanager
async def store_boundary(
    where: str,
    operation: str,
    timeout_s: float,
    errors: tuple[type[BaseException], ...],
    redact: Callable[[str], str] = str,
) -> AsyncIterator[None]:
    """Bounds a backend call by the timeout and translates the driver's failures, at the one place
    they arise, into `StoreUnavailableError` (with credentials redacted from the driver's text)."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError as exc:
        raise StoreUnavailableError(f"{where}: {operation} timed out after {timeout_s:g}s") from exc
    except errors as exc:
        message = redact(str(exc) or type(exc).__name__)
        raise StoreUnavailableError(f"{where}: {operation} failed: {message}") from exc
