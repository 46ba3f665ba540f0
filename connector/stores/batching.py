"""Store calls of one kind, made at about the same time, coalesced into one batch call.

Every delivery makes two store calls (its claim, and its outcome once its result is acknowledged)
and every event one more (its fingerprint check). Made one by one, each costs a backend operation of
its own: a transaction on SQLite, a command on Redis, a statement on PostgreSQL. Here the calls of
one kind that arrive while the previous batch of that kind is at the store wait for it and then go
together, as one `claim_many`, `record_outcomes`, `mark_reported` or `check_events`: under load a
batch holds tens of calls, and when idle a call goes alone at once (no timer, no added wait).

A batch that fails fails each of its callers with the error (each caller's `StoreGuard` retries on
its own), and a caller that stops waiting leaves the others' answers alone.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from connector.errors import StoreUnavailableError
from connector.models import Outcome
from connector.stores import Claim, DeliveryKey, IdempotencyStore
from connector.stores.guard import StoreGuard

Item = TypeVar("Item")
Answer = TypeVar("Answer")

#: Calls in one batch at most (one SQLite transaction holds several batches).
MAX_BATCH = 128


class Coalescer(Generic[Item, Answer]):
    """`submit(item)` answers with `call(batch)[i]` for the batch the item went in."""

    def __init__(
        self, call: Callable[[list[Item]], Awaitable[Sequence[Answer]]], max_batch: int = MAX_BATCH
    ) -> None:
        self._call = call
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((item, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        return await future

    async def _send(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Answer]]] = []
        try:
            while self._waiting:
                batch = [(item, f) for item, f in self._waiting[: self._max_batch] if not f.done()]
                del self._waiting[: self._max_batch]
                if not batch:
                    continue
                try:
                    answers = await self._call([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(_for_one_caller(exc))
                    continue
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
                batch = []
        except BaseException:
            # Cancelled (the loop is shutting down): nobody is left to send for the waiting callers.
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._sender = None


def written(write: Callable[[list[Item]], Awaitable[None]]) -> Callable[[list[Item]], Awaitable[list[None]]]:
    """A batch write as a `Coalescer`'s call: the write, then nothing to answer each caller."""

    async def call(items: list[Item]) -> list[None]:
        await write(items)
        return [None] * len(items)

    return call


def _for_one_caller(exc: Exception) -> Exception:
    # One exception object raised in many tasks would collect all their tracebacks.
    if isinstance(exc, StoreUnavailableError):
        return StoreUnavailableError(str(exc))
    return exc


class EventChecks:
    """The screening's store call: each `event_id`'s first content (`check_events`), checks made at
    about the same time coalesced, a store outage waited out."""

    def __init__(self, guard: StoreGuard) -> None:
        self._guard = guard
        self._checks: Coalescer[tuple[str, str], bool] = Coalescer(guard.store.check_events)

    async def check_event(self, event_id: str, fingerprint: str) -> bool:
        """Remember the event's content on first sight; False when the id came with other content."""
        return await self._guard.call(self._checks.submit, (event_id, fingerprint))


class StoreBatcher:
    """The store calls of the delivery path, each kind coalesced; same answers as the store's own."""

    def __init__(self, store: IdempotencyStore, owner: str, lease_s: float) -> None:
        self.store = store
        self._claims: Coalescer[DeliveryKey, Claim] = Coalescer(
            lambda keys: store.claim_many(keys, owner, lease_s)
        )
        self._outcomes: Coalescer[tuple[DeliveryKey, Outcome, bytes], None] = Coalescer(
            written(functools.partial(store.record_outcomes, reported=False))
        )
        self._settled: Coalescer[tuple[DeliveryKey, Outcome, bytes], None] = Coalescer(
            written(functools.partial(store.record_outcomes, reported=True))
        )
        self._reports: Coalescer[DeliveryKey, None] = Coalescer(written(store.mark_reported))

    async def claim(self, key: DeliveryKey) -> Claim:
        return await self._claims.submit(key)

    async def record_outcome(
        self, key: DeliveryKey, outcome: Outcome, result: bytes, *, reported: bool = False
    ) -> None:
        await (self._settled if reported else self._outcomes).submit((key, outcome, result))

    async def mark_reported(self, key: DeliveryKey) -> None:
        await self._reports.submit(key)
