"""A platform's request rate: a FIFO token bucket that settles near the rate a platform accepts."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

from connector.config import PlatformSettings

# A token due within this long counts as due: refill arithmetic can leave the bucket an ulp
# short at the instant a sleep ends, and a nanosecond re-sleep would only spin the event loop.
_DUE_SLACK_S = 1e-6
# A 429 slows the rate down only when refusals are more than a stray one among the recent answers
# (TCP's loss threshold, not a reaction to every loss): a limit shared with other clients refuses
# now and then whatever our rate, and only a run of refusals says that we are the ones too fast.
_ANSWERS_WINDOW = 32
_SUSTAINED_REFUSALS = 3
# Responses to requests sent before a slow-down still arrive for about one round trip; slowing
# down again for each of them would collapse the rate after one burst of 429s.
_DECREASE_INTERVAL_S = 1.0
# A slow-down takes the rate to what the platform accepted over the last second (its limit, when
# it refused us for going faster), within these bounds of the rate that met the refusal.
_DECREASE_AT_LEAST = 0.9
_DECREASE_AT_MOST = 0.5
_ACCEPTED_WINDOW_S = 1.0
# Recovery, as a share of the configured rate per second at full use: fast far from the rate
# that last met a 429, slow near it (within `_NEAR_LIMIT`), so the rate dwells just under a
# limit instead of oscillating across it.
_RECOVERY_SHARE_PER_S = 0.1
_PROBE_SHARE_PER_S = 0.01
_NEAR_LIMIT = (0.85, 1.15)
_FLOOR_SHARE = 0.1
_FLOOR_MIN_RPS = 1.0


class TokenBucket:
    """Admits at most `burst + rate_per_s * T` acquisitions in any interval of length `T`.

    - `acquire()` returns once a token is taken. Waiters are served first come, first served: a
      newcomer never overtakes a queued waiter, even when a token happens to be free. Only the
      head of the queue sleeps (once, for exactly its deficit); the rest wait on a future, so
      thousands of waiters cost no timers and no polling.
    - Cancelling a waiter takes nothing from the bucket: a token is only taken by a waiter that
      then returns.
    - `rate_per_s == 0` means unlimited: `acquire()` returns at once and `throttle()` /
      `on_success()` do nothing. Such a platform gave us no rate to slow down from; its 429s are
      handled per delivery (`RetryPolicy` honours `Retry-After`) and, when they persist, by the
      circuit breaker.
    - `throttle(retry_after_s)` reports a 429 from a limit we do not know. A stray one (fewer
      than 3 refusals among the last 32 answers) changes nothing here: the limit is shared with
      other clients and refused us for their traffic, so only the refused request waits (its
      `Retry-After`, owned by `RetryPolicy`). A sustained run of them means our own rate is above
      the limit: the effective rate drops (at most once per second) to the rate of successes over
      the last second, which is what the platform's limit let through, but by at least 10% and at
      most half, never below `max(10% of rate_per_s, 1 rps)`; the saved-up burst is forfeited,
      and a `Retry-After` pauses every acquisition for that long (at most `max_hold_s`, so one
      odd header cannot stall a platform for hours).
    - `on_success()` reports a success: the effective rate climbs back additively, by 10% of
      `rate_per_s` per second of successes at full use, up to `rate_per_s`; within 15% of the
      rate that last met a 429, by only 1% per second. So against a limit below `rate_per_s` the
      rate settles in a slow sawtooth just under it (additive increase, gentle multiplicative
      decrease), and 429s stay a small share of the requests.

    The bucket starts full. The effective rate never exceeds `rate_per_s`, so the bound above
    holds through every slow-down and recovery (give or take a microsecond's worth of tokens:
    a token due within a microsecond is handed out). `clock` must keep pace with the event
    loop's clock, which times the head's sleep; the default does.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_hold_s: float = 60.0,
    ) -> None:
        if not (rate_per_s >= 0 and math.isfinite(rate_per_s)):
            raise ValueError("rate_per_s must be a finite number >= 0 (0 = unlimited)")
        if burst is not None and not (burst >= 1 and math.isfinite(burst)):
            raise ValueError("burst must be a finite number >= 1")
        if not max_hold_s >= 0:
            raise ValueError("max_hold_s must be >= 0")
        self._clock = clock
        self._rate = float(rate_per_s)
        self._burst = float(burst) if burst is not None else max(1.0, self._rate)
        self._max_hold_s = max_hold_s
        self._floor = min(self._rate, max(self._rate * _FLOOR_SHARE, _FLOOR_MIN_RPS))
        self._effective = self._rate
        self._tokens = self._burst
        # Tokens accrue from this instant on; during a Retry-After pause it lies in the future.
        self._updated = clock()
        self._last_decrease = -math.inf
        # The effective rate that last met a 429 (none yet), and when recent successes came.
        self._refused_at_rate: float | None = None
        self._successes: deque[float] = deque()
        # The last answers, True for a refusal, and how many of them were refusals.
        self._answers: deque[bool] = deque(maxlen=_ANSWERS_WINDOW)
        self._refusals = 0
        # The head (index 0) is the waiter being served; the others wait for it to leave.
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> TokenBucket:
        return cls(settings.rate_limit_rps, settings.rate_limit_burst)

    @property
    def rate_per_s(self) -> float:
        """The configured rate (0 = unlimited)."""
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    @property
    def effective_rate_per_s(self) -> float:
        """The rate currently enforced: `rate_per_s`, or less while slowing down after 429s."""
        return self._effective

    @property
    def waiting(self) -> int:
        """How many callers are queued in `acquire()`."""
        return len(self._waiters)

    async def acquire(self) -> None:
        if self._rate == 0:
            return
        if not self._waiters and self._take_or_wait_s() is None:
            return
        me: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(me)
        try:
            if self._waiters[0] is not me:
                await me
            wait_s = self._take_or_wait_s()
            while wait_s is not None:
                # Sleep for the whole deficit; wake again only if a throttle() landed meanwhile.
                await asyncio.sleep(wait_s)
                wait_s = self._take_or_wait_s()
        finally:
            was_head = self._waiters[0] is me
            self._waiters.remove(me)
            # Hand over whether we got a token or were cancelled (even right after being woken):
            # the next waiter must not be left waiting for a wake-up that never comes.
            if was_head and self._waiters:
                head = self._waiters[0]
                if not head.done():
                    head.set_result(None)

    def throttle(self, retry_after_s: float | None = None) -> None:
        """The platform answered 429 (`retry_after_s` from its `Retry-After`, if any)."""
        if self._rate == 0:
            return
        self._record_answer(refused=True)
        if self._refusals < _SUSTAINED_REFUSALS:
            return
        now = self._clock()
        self._refill(now)
        if now - self._last_decrease >= _DECREASE_INTERVAL_S:
            accepted = self._accepted_per_s(now)
            decreased = min(
                self._effective * _DECREASE_AT_LEAST, max(accepted, self._effective * _DECREASE_AT_MOST)
            )
            self._refused_at_rate = self._effective
            self._effective = max(self._floor, decreased)
            self._last_decrease = now
        self._tokens = min(self._tokens, 0.0)
        if retry_after_s is not None and retry_after_s > 0:
            self._updated = max(self._updated, now + min(retry_after_s, self._max_hold_s))

    def pause(self, seconds: float) -> None:
        """The platform refuses every request for `seconds` (a platform-wide throttle).

        Nothing is handed out or accrues until then, and the saved-up burst is forfeited: the
        requests that waited leave at the rate, not together. The rate itself is not lowered.
        """
        if self._rate == 0 or seconds <= 0:
            return
        now = self._clock()
        self._refill(now)
        self._tokens = min(self._tokens, 0.0)
        self._updated = max(self._updated, now + min(seconds, self._max_hold_s))

    def on_success(self) -> None:
        """A request went through; creep back toward the configured rate."""
        if self._rate == 0:
            return
        self._record_answer(refused=False)
        now = self._clock()
        self._successes.append(now)
        if len(self._successes) > 4 * self._rate + 16:
            # Bounded memory: only the last second's successes are ever counted.
            self._successes.popleft()
        if self._effective >= self._rate:
            return
        self._refill(now)
        share = _RECOVERY_SHARE_PER_S
        refused = self._refused_at_rate
        if refused is not None and _NEAR_LIMIT[0] * refused <= self._effective <= _NEAR_LIMIT[1] * refused:
            share = _PROBE_SHARE_PER_S
        # Successes arrive about `effective` times a second, so this step adds `share * rate`
        # per second: additive in time, not in requests.
        step = share * self._rate / self._effective
        self._effective = min(self._rate, self._effective + step)

    def _record_answer(self, *, refused: bool) -> None:
        answers = self._answers
        if len(answers) == _ANSWERS_WINDOW and answers[0]:
            self._refusals -= 1
        answers.append(refused)
        self._refusals += refused

    def _accepted_per_s(self, now: float) -> float:
        successes = self._successes
        while successes and successes[0] < now - _ACCEPTED_WINDOW_S:
            successes.popleft()
        return len(successes) / _ACCEPTED_WINDOW_S

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._effective)
            self._updated = now

    def _take_or_wait_s(self) -> float | None:
        """Take a token and return None, or return how long until one is due."""
        now = self._clock()
        self._refill(now)
        # While paused by a Retry-After, `_updated` lies ahead and nothing accrues until then.
        wait_s = max(0.0, self._updated - now) + max(0.0, 1 - self._tokens) / self._effective
        if wait_s > _DUE_SLACK_S:
            return wait_s
        self._tokens -= 1
        return None
