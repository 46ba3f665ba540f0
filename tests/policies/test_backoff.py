"""Backoff: the one waiting rule of every infrastructure retry loop."""

from __future__ import annotations

from connector.policies.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_starts_over() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.advance() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay == 3.0
    backoff.reset()
    assert backoff.delay == 0.5


async def test_wait_sleeps_the_current_delay_then_doubles_it() -> None:
    backoff = Backoff(0.001, 0.004)
    await backoff.wait()
    assert backoff.delay == 0.002
