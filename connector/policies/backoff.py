"""How a loop waits before trying again after an infrastructure failure: doubling, capped."""

from __future__ import annotations

import asyncio


class Backoff:
    """`await wait()` sleeps the current delay and doubles it up to `max_s`; `reset()` after a success."""

    __slots__ = ("_delay", "_first", "_max")

    def __init__(self, first_s: float, max_s: float) -> None:
        self._first = first_s
        self._max = max_s
        self._delay = first_s

    @property
    def delay(self) -> float:
        """The next wait."""
        return self._delay

    def reset(self) -> None:
        self._delay = self._first

    async def wait(self) -> None:
        delay = self._delay
        self._delay = min(delay * 2, self._max)
        await asyncio.sleep(delay)
