"""When to try a delivery again: exponential backoff with full jitter, bounded by attempts and time."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from connector.config import PlatformSettings

# Float noise in `budget - elapsed` must not turn a spent budget into a sub-microsecond retry.
_SPENT_BUDGET_S = 1e-3
# 2**60 times any sane base already exceeds any sane cap; larger exponents would only overflow.
_MAX_EXPONENT = 60


class RetryReason(StrEnum):
    """Why a `RetryDecision` was made (also usable as a metric label)."""

    #: Retry after a jittered exponential delay.
    BACKOFF = "backoff"
    #: Retry no earlier than the platform's `Retry-After`.
    RETRY_AFTER = "retry_after"
    #: Give up: the delivery has made `max_attempts` attempts.
    MAX_ATTEMPTS = "max_attempts"
    #: Give up: the delivery's retry budget is spent.
    RETRY_BUDGET = "retry_budget"
    #: Give up: the platform asked for a wait longer than the budget that is left.
    RETRY_AFTER_BEYOND_BUDGET = "retry_after_beyond_budget"


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to attempt again, after how long, and why."""

    retry: bool
    delay_s: float
    reason: RetryReason


class RetryPolicy:
    """Decides, after a retryable failure, whether and when one delivery attempts again.

    The settings are the README's (`MAX_ATTEMPTS`, `RETRY_BUDGET_S`, `BACKOFF_BASE_S`, `BACKOFF_MAX_S`).

    - The delay is drawn uniformly from `[0, min(max_s, base_s * 2**(attempts_made - 1))]` (full
      jitter, so deliveries that failed together do not come back together).
    - A `Retry-After` is a floor: the delay is never shorter than it.
    - No retry once `attempts_made >= max_attempts`.
    - No retry is ever scheduled past `budget_s` (measured from the delivery's first attempt):
      a jittered delay is shortened to the budget that is left; a `Retry-After` that does not fit
      ends the delivery at once (`retry_after_beyond_budget`) instead of sleeping past its budget.

    Stateless apart from the random source, so one instance serves every delivery of a platform.
    """

    def __init__(
        self,
        *,
        max_attempts: int,
        budget_s: float,
        base_s: float,
        max_s: float,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if budget_s <= 0 or base_s <= 0 or max_s <= 0:
            raise ValueError("budget_s, base_s and max_s must be positive")
        self.max_attempts = max_attempts
        self.budget_s = budget_s
        self.base_s = base_s
        self.max_s = max_s
        self._rng = rng if rng is not None else random.Random()

    @classmethod
    def from_settings(cls, settings: PlatformSettings, *, rng: random.Random | None = None) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            budget_s=settings.retry_budget_s,
            base_s=settings.backoff_base_s,
            max_s=settings.backoff_max_s,
            rng=rng,
        )

    def cap_s(self, attempts_made: int) -> float:
        """The upper end of the jitter range after `attempts_made` attempts."""
        exponent = min(max(attempts_made - 1, 0), _MAX_EXPONENT)
        return min(self.max_s, math.ldexp(self.base_s, exponent))

    def next_delay(self, attempts_made: int, elapsed_s: float, retry_after_s: float | None) -> RetryDecision:
        """Decide after the `attempts_made`-th attempt failed, `elapsed_s` after the first one began."""
        if attempts_made >= self.max_attempts:
            return RetryDecision(False, 0.0, RetryReason.MAX_ATTEMPTS)
        remaining = self.budget_s - elapsed_s
        if remaining <= _SPENT_BUDGET_S:
            return RetryDecision(False, 0.0, RetryReason.RETRY_BUDGET)
        floor = max(retry_after_s, 0.0) if retry_after_s is not None else 0.0
        if not self._fits(floor, elapsed_s):
            return RetryDecision(False, 0.0, RetryReason.RETRY_AFTER_BEYOND_BUDGET)
        delay = max(self._rng.uniform(0.0, self.cap_s(attempts_made)), floor)
        if not self._fits(delay, elapsed_s):
            # Waiting less than the jitter drew is fine; waiting past the budget is not. `remaining`
            # can overshoot by an ulp once added back to `elapsed_s`, hence the nudge. The floor fits
            # (checked above) and float addition is monotonic, so the nudging never goes below it.
            delay = max(remaining, floor)
            while not self._fits(delay, elapsed_s):
                delay = math.nextafter(delay, 0.0)
        reason = RetryReason.RETRY_AFTER if retry_after_s is not None else RetryReason.BACKOFF
        return RetryDecision(True, delay, reason)

    def _fits(self, delay_s: float, elapsed_s: float) -> bool:
        return elapsed_s + delay_s <= self.budget_s
