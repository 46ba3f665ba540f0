"""A platform-wide hold: no request to the platform starts before a time the platform named."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class PlatformHold:
    """Holds every request to one platform until a deadline (a throttle's reset time).

    - `hold_for(seconds)` extends the hold to `now + seconds`; a shorter hold never shortens it.
      Concurrent refusals naming the same reset time therefore extend it once.
    - `wait()` returns once no hold is in force (at once when there is none) and says how long it
      waited, so a delivery can leave that time out of its retry budget.
    - `on_hold_added(seconds)` is called with the time each extension added, so a counter of held
      seconds counts every held second once, however many refusals named it.
    """

    def __init__(
        self,
        on_hold_added: Callable[[float], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._until = -float("inf")
        self._on_hold_added = on_hold_added
        self._clock = clock

    @property
    def held(self) -> bool:
        return self._clock() < self._until

    @property
    def remaining_s(self) -> float:
        """How long the hold in force lasts still (0 when there is none)."""
        return max(0.0, self._until - self._clock())

    def hold_for(self, seconds: float) -> None:
        now = self._clock()
        until = now + seconds
        if until > self._until:
            self._on_hold_added(until - max(now, self._until))
            self._until = until

    async def wait(self) -> float:
        waited = 0.0
        now = self._clock()
        # A hold can be extended while we sleep: look again after every sleep.
        while now < self._until:
            await asyncio.sleep(self._until - now)
            later = self._clock()
            waited += later - now
            now = later
        return waited
