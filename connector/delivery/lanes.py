"""Per-(order, platform) ordering: deliveries of one key run one after another, in input order."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class LaneTicket:
    """A place in a lane, taken synchronously when the event is consumed."""

    __slots__ = ("_key", "_lanes", "_mine", "_previous")

    def __init__(self, lanes: OrderingLanes, key: Hashable, previous: asyncio.Future[None] | None) -> None:
        self._lanes = lanes
        self._key = key
        self._previous = previous
        self._mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait_turn(self) -> None:
        """Return once every earlier delivery of the same key has finished."""
        if self._previous is not None and not self._previous.done():
            # shield: cancelling this waiter must not mark the previous delivery finished.
            await asyncio.shield(self._previous)

    def finish(self) -> None:
        """Let the next delivery of the key go; call exactly once, also on failure or cancellation.

        A ticket finished before its turn (its event went to the DLQ without delivering) hands its
        place on only once the earlier ones finished: the later ones must not overtake those.
        """
        if self._previous is not None and not self._previous.done():
            self._previous.add_done_callback(lambda _: self._pass_on())
            return
        self._pass_on()

    def _pass_on(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)
        self._lanes._release(self._key, self._mine)


class OrderingLanes:
    """Tickets chain per key; different keys never wait on each other. Memory is one future per
    key that has work in flight, so it is bounded by the in-flight limit."""

    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Future[None]] = {}

    def take(self, key: Hashable) -> LaneTicket:
        ticket = LaneTicket(self, key, self._tails.get(key))
        self._tails[key] = ticket._mine
        return ticket

    def _release(self, key: Hashable, future: asyncio.Future[None]) -> None:
        if self._tails.get(key) is future:
            del self._tails[key]

    def __len__(self) -> int:
        return len(self._tails)
