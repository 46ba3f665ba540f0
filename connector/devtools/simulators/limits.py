"""Request limits as platforms enforce them, for the simulators: quotas, throttles, per-second rates.

A limit is asked about every request a simulator receives (token requests included, as the
platforms count them) before anything else happens, and answers when the refusal it would give
ends, or None to let the request through. Times are on the monotonic clock.
"""

from __future__ import annotations

from typing import Protocol


class RequestLimit(Protocol):
    def admit(self, now: float) -> float | None:
        """None to let the request through; otherwise the monotonic time until which it refuses."""


class WindowQuota:
    """At most `requests` per window of `window_s`; then everything is refused until the window ends.

    The window opens with the first request after the previous one closed, as a quota with a
    reset time does (Sellercloud: 10,800 requests an hour per client IP). Refused requests do not
    count.
    """

    def __init__(self, requests: int, window_s: float) -> None:
        if requests < 1 or window_s <= 0:
            raise ValueError("a quota needs requests >= 1 and window_s > 0")
        self.requests = requests
        self.window_s = window_s
        self._opened: float | None = None
        self._used = 0

    def admit(self, now: float) -> float | None:
        if self._opened is None or now >= self._opened + self.window_s:
            self._opened, self._used = now, 0
        if self._used >= self.requests:
            return self._opened + self.window_s
        self._used += 1
        return None


class ThrottleAfterEvery:
    """After every `every`-th request let through, everything is refused for `hold_s` seconds.

    A harsher stand-in for a quota, for tests: the throttle comes often and lasts long enough to
    tell a client that waits for the reset from one that keeps knocking.
    """

    def __init__(self, every: int, hold_s: float) -> None:
        if every < 1 or hold_s <= 0:
            raise ValueError("a throttle needs every >= 1 and hold_s > 0")
        self.every = every
        self.hold_s = hold_s
        self._used = 0
        self._until = -float("inf")

    def admit(self, now: float) -> float | None:
        if now < self._until:
            return self._until
        self._used += 1
        if self._used >= self.every:
            self._used = 0
            self._until = now + self.hold_s
        return None


class RequestsPerSecond:
    """At most `rate` requests per second, up to one second's worth at once (429 beyond it).

    Elastic Path's per-store limit: 100 requests per second on a production store, 25 on a
    development store.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self._tokens = rate
        self._updated: float | None = None

    def admit(self, now: float) -> float | None:
        if self._updated is not None:
            self._tokens = min(self.rate, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1:
            return now + (1 - self._tokens) / self.rate
        self._tokens -= 1
        return None
