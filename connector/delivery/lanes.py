"""Per-(order, platform) ordering: deliveries of one key run one after another, in input order."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Hashable
from typing import TypeVar

T = TypeVar("T")


async def await_shielded(future: asyncio.Future[T]) -> T:
    """`await asyncio.shield(future)` for a future (not a coroutine): cancelling the waiter leaves
    `future` alone. One future and one callback instead of shield's two of each and its checks: this
    runs for every delivery (its conflict check, its turn in its lane)."""
    if future.done():
        return future.result()
    waiter: asyncio.Future[T] = future.get_loop().create_future()
    relay = functools.partial(_relay, waiter)
    future.add_done_callback(relay)
    try:
        return await waiter
    except asyncio.CancelledError:
        # As shield does: a waiter that gave up leaves nothing behind on the future.
        future.remove_done_callback(relay)
        raise


def _relay(waiter: asyncio.Future[T], future: asyncio.Future[T]) -> None:
    if waiter.done():
        return  # its waiter was cancelled meanwhile
    if future.cancelled():
        waiter.cancel()
    elif (exc := future.exception()) is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(future.result())


class LaneTicket:
    """A place in a lane, taken synchronously when the event is consumed."""

    __slots__ = ("_finished", "_future", "_key", "_lanes", "_loop", "_previous")

    def __init__(self, lanes: OrderingLanes, key: Hashable, previous: LaneTicket | None) -> None:
        self._lanes = lanes
        self._key = key
        # Kept for the future made later: `finish` may run where no loop runs (a coroutine closed
        # after its loop stopped, its `finally` finishing the ticket).
        self._loop = asyncio.get_running_loop()
        #: The ticket before this one, until this one has passed its place on.
        self._previous = previous
        self._finished = False
        #: Made only when a later ticket has to wait for this one (most never do).
        self._future: asyncio.Future[None] | None = None

    async def wait_turn(self) -> None:
        """Return once every earlier delivery of the same key has finished."""
        previous = self._previous
        if previous is not None and not previous._finished:
            # Shielded: cancelling this waiter must not mark the previous delivery finished.
            await await_shielded(previous._finishing())

    def finish(self) -> None:
        """Let the next delivery of the key go; call exactly once, also on failure or cancellation.

        A ticket finished before its turn (its event went to the DLQ without delivering) hands its
        place on only once the earlier ones finished: the later ones must not overtake those.
        """
        previous = self._previous
        if previous is not None and not previous._finished:
            previous._finishing().add_done_callback(lambda _: self._pass_on())
            return
        self._pass_on()

    def _finishing(self) -> asyncio.Future[None]:
        """Done once this ticket has passed its place on."""
        if self._future is None:
            self._future = self._loop.create_future()
            if self._finished:
                self._future.set_result(None)
        return self._future

    def _pass_on(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._previous = None  # a lane keeps only its unfinished tickets, not their whole history
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._lanes._release(self._key, self)


class OrderingLanes:
    """Tickets chain per key; different keys never wait on each other. Memory is the unfinished
    tickets of each key that has work in flight, so it is bounded by the in-flight limit."""

    def __init__(self) -> None:
        self._tails: dict[Hashable, LaneTicket] = {}

    def take(self, key: Hashable) -> LaneTicket:
        ticket = LaneTicket(self, key, self._tails.get(key))
        self._tails[key] = ticket
        return ticket

    def _release(self, key: Hashable, ticket: LaneTicket) -> None:
        if self._tails.get(key) is ticket:
            del self._tails[key]

    def __len__(self) -> int:
        return len(self._tails)
