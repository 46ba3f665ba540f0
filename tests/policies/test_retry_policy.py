from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.config import PlatformSettings
from connector.policies import RetryDecision, RetryPolicy, RetryReason

# Durations a platform setting could plausibly hold, in seconds.
durations = st.floats(min_value=0.001, max_value=1000, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=20)),
        budget_s=draw(durations),
        base_s=draw(st.floats(min_value=0.001, max_value=10)),
        max_s=draw(st.floats(min_value=0.001, max_value=100)),
        rng=random.Random(draw(st.integers(min_value=0, max_value=2**32))),
    )


@st.composite
def situations(draw: st.DrawFn) -> tuple[RetryPolicy, int, float, float | None]:
    """A policy, attempts made so far, time elapsed (sometimes past the budget), a Retry-After."""
    policy = draw(policies())
    attempts_made = draw(st.integers(min_value=1, max_value=policy.max_attempts + 2))
    elapsed_s = draw(st.floats(min_value=0, max_value=policy.budget_s * 1.2))
    retry_after_s = draw(st.none() | st.floats(min_value=0, max_value=policy.budget_s * 1.5))
    return policy, attempts_made, elapsed_s, retry_after_s


@given(situations())
@settings(max_examples=100)
def test_delay_is_never_below_retry_after(situation: tuple[RetryPolicy, int, float, float | None]) -> None:
    policy, attempts_made, elapsed_s, retry_after_s = situation
    decision = policy.next_delay(attempts_made, elapsed_s, retry_after_s)
    if decision.retry and retry_after_s is not None:
        assert decision.delay_s >= retry_after_s
        assert decision.reason is RetryReason.RETRY_AFTER


@given(situations())
@settings(max_examples=100)
def test_delay_stays_within_zero_and_the_backoff_cap(
    situation: tuple[RetryPolicy, int, float, float | None],
) -> None:
    policy, attempts_made, elapsed_s, retry_after_s = situation
    decision = policy.next_delay(attempts_made, elapsed_s, retry_after_s)
    if decision.retry:
        upper = max(policy.cap_s(attempts_made), retry_after_s or 0.0)
        assert 0.0 <= decision.delay_s <= upper
        assert policy.cap_s(attempts_made) <= policy.max_s


@given(situations())
@settings(max_examples=100)
def test_never_retries_beyond_max_attempts(situation: tuple[RetryPolicy, int, float, float | None]) -> None:
    policy, attempts_made, elapsed_s, retry_after_s = situation
    decision = policy.next_delay(attempts_made, elapsed_s, retry_after_s)
    if attempts_made >= policy.max_attempts:
        assert decision == RetryDecision(False, 0.0, RetryReason.MAX_ATTEMPTS)
    else:
        assert decision.reason is not RetryReason.MAX_ATTEMPTS


@given(situations())
@settings(max_examples=100)
def test_never_schedules_past_the_budget(situation: tuple[RetryPolicy, int, float, float | None]) -> None:
    policy, attempts_made, elapsed_s, retry_after_s = situation
    decision = policy.next_delay(attempts_made, elapsed_s, retry_after_s)
    if decision.retry:
        assert elapsed_s + decision.delay_s <= policy.budget_s
    if elapsed_s >= policy.budget_s:
        assert not decision.retry


@given(situations())
@settings(max_examples=100)
def test_retry_after_beyond_remaining_budget_gives_up_at_once(
    situation: tuple[RetryPolicy, int, float, float | None],
) -> None:
    policy, attempts_made, elapsed_s, retry_after_s = situation
    remaining = policy.budget_s - elapsed_s
    if retry_after_s is None or attempts_made >= policy.max_attempts or remaining <= 0.001:
        return
    decision = policy.next_delay(attempts_made, elapsed_s, retry_after_s)
    if elapsed_s + retry_after_s > policy.budget_s:
        assert decision == RetryDecision(False, 0.0, RetryReason.RETRY_AFTER_BEYOND_BUDGET)
    else:
        assert decision.retry


@given(
    policies(),
    st.floats(min_value=0, max_value=0.99),
    # Relative to the budget, so the excess is never lost to float rounding.
    st.floats(min_value=1e-9, max_value=10),
)
@settings(max_examples=100)
def test_any_retry_after_past_the_remaining_budget_is_exhausted(
    policy: RetryPolicy, spent_share: float, beyond_share: float
) -> None:
    elapsed_s = policy.budget_s * spent_share
    retry_after_s = policy.budget_s - elapsed_s + policy.budget_s * beyond_share
    if policy.max_attempts == 1 or policy.budget_s - elapsed_s <= 0.001:
        return
    decision = policy.next_delay(1, elapsed_s, retry_after_s)
    assert decision == RetryDecision(False, 0.0, RetryReason.RETRY_AFTER_BEYOND_BUDGET)


@given(policies(), st.lists(st.floats(min_value=0, max_value=20), min_size=25, max_size=25))
@settings(max_examples=60)
def test_a_whole_delivery_respects_attempts_and_budget(policy: RetryPolicy, attempt_s: list[float]) -> None:
    """Drive one delivery that always fails: attempts and time spent sleeping stay within the policy."""
    elapsed = 0.0
    attempts = 0
    for duration in attempt_s:
        attempts += 1
        elapsed += duration
        decision = policy.next_delay(attempts, elapsed, None)
        if not decision.retry:
            break
        assert elapsed + decision.delay_s <= policy.budget_s
        elapsed += decision.delay_s
    assert attempts <= policy.max_attempts


def test_jitter_covers_the_whole_range_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, budget_s=1e6, base_s=0.2, max_s=30, rng=random.Random(7))
    for attempts_made, cap in [(1, 0.2), (2, 0.4), (3, 0.8), (8, 25.6), (9, 30.0)]:
        assert policy.cap_s(attempts_made) == pytest.approx(cap)
        delays = [policy.next_delay(attempts_made, 0.0, None).delay_s for _ in range(2000)]
        assert min(delays) < 0.02 * cap
        assert max(delays) > 0.98 * cap
        assert all(0 <= d <= cap for d in delays)


def test_plain_backoff_is_shortened_to_the_remaining_budget() -> None:
    policy = RetryPolicy(max_attempts=10, budget_s=10, base_s=100, max_s=100, rng=random.Random(1))
    decision = policy.next_delay(3, 9.5, None)
    assert decision.retry
    assert 0 <= decision.delay_s <= 0.5
    assert decision.reason is RetryReason.BACKOFF


def test_spent_budget_gives_up() -> None:
    policy = RetryPolicy(max_attempts=10, budget_s=10, base_s=1, max_s=5)
    assert policy.next_delay(2, 10.0, None) == RetryDecision(False, 0.0, RetryReason.RETRY_BUDGET)
    assert policy.next_delay(2, 12.0, None) == RetryDecision(False, 0.0, RetryReason.RETRY_BUDGET)


def test_retry_after_that_fits_is_honoured_even_when_jitter_would_overshoot() -> None:
    policy = RetryPolicy(max_attempts=10, budget_s=10, base_s=100, max_s=100, rng=random.Random(3))
    decision = policy.next_delay(1, 5.0, 4.0)
    assert decision.retry
    assert 4.0 <= decision.delay_s <= 5.0


def test_retry_after_longer_than_remaining_budget_is_exhausted_at_once() -> None:
    policy = RetryPolicy(max_attempts=10, budget_s=300, base_s=0.2, max_s=30)
    decision = policy.next_delay(1, 250.0, 120.0)
    assert decision == RetryDecision(False, 0.0, RetryReason.RETRY_AFTER_BEYOND_BUDGET)
    assert decision.reason == "retry_after_beyond_budget"


def test_many_attempts_do_not_overflow() -> None:
    policy = RetryPolicy(max_attempts=10_000, budget_s=1e9, base_s=0.2, max_s=30)
    assert policy.cap_s(5000) == 30
    assert policy.next_delay(5000, 0.0, None).retry


def test_from_settings_maps_platform_settings() -> None:
    settings = PlatformSettings(max_attempts=3, retry_budget_s=42, backoff_base_s=0.5, backoff_max_s=7)
    policy = RetryPolicy.from_settings(settings)
    assert (policy.max_attempts, policy.budget_s, policy.base_s, policy.max_s) == (3, 42, 0.5, 7)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0, "budget_s": 1, "base_s": 1, "max_s": 1},
        {"max_attempts": 1, "budget_s": 0, "base_s": 1, "max_s": 1},
        {"max_attempts": 1, "budget_s": 1, "base_s": 0, "max_s": 1},
        {"max_attempts": 1, "budget_s": 1, "base_s": 1, "max_s": -1},
    ],
)
def test_rejects_nonsensical_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
