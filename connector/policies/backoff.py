"""How a loop waits before trying again after an infrastructure failure: doubling, capped."""

from __future__ import annotations

import asyncio


class Backoff:
    """`await wait()` sleeps the current delay and doubles it up to `max_s`; `reset()` after a success.

    Every loop that retries infrastructure (Kafka, the store, a busy claim) waits through one of
    these, each with its own first and longest wait; `advance()` serves a loop that cannot await
    (SQLite's worker thread).
    """

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

    def advance(self) -> float:
        """The current delay, doubling the next one: for a caller that sleeps by itself."""
        delay = self._delay
        self._delay = min(delay * 2, self._max)
        return delay

    async def wait(self) -> None:
        await asyncio.sleep(self.advance())
