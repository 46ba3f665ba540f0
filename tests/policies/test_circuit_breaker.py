from __future__ import annotations

import asyncio
from enum import StrEnum

import pytest

from connector.config import PlatformSettings
from connector.policies import CircuitBreaker, CircuitState

from .virtual_time import now, run_virtual

RESET_S = 5.0


class Verdict(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    RELEASE = "release"
    #: Finish without telling the breaker anything.
    LEAVE = "leave"


class Caller:
    """One delivery: waits for the breaker, then does what the test tells it from inside its own task."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.admitted_at: float | None = None
        self._verdict: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run())

    @property
    def admitted(self) -> bool:
        return self.admitted_at is not None

    def tell(self, verdict: Verdict) -> None:
        self._verdict.set_result(verdict)

    async def _run(self) -> None:
        await self.breaker.wait_until_allowed()
        self.admitted_at = now()
        verdict = await self._verdict
        if verdict is Verdict.SUCCESS:
            self.breaker.record_success()
        elif verdict is Verdict.FAILURE:
            self.breaker.record_failure()
        elif verdict is Verdict.RELEASE:
            self.breaker.record_released()
            await asyncio.Event().wait()  # stays alive: only the explicit release may free the probe


def breaker_with_log(
    threshold: int = 3, probe_timeout_s: float | None = None
) -> tuple[CircuitBreaker, list[CircuitState]]:
    changes: list[CircuitState] = []
    breaker = CircuitBreaker(
        threshold,
        RESET_S,
        clock=asyncio.get_running_loop().time,
        on_change=changes.append,
        probe_timeout_s=probe_timeout_s,
    )
    return breaker, changes


def state_of(breaker: CircuitBreaker) -> CircuitState:
    # A call, not the property: type checkers would otherwise narrow the state across awaits.
    return breaker.state


def open_now(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    assert state_of(breaker) is CircuitState.OPEN


def admitted(callers: list[Caller]) -> list[Caller]:
    return [c for c in callers if c.admitted]


async def settle() -> None:
    """Let every task that can run do so, without moving the virtual clock meaningfully."""
    await asyncio.sleep(1e-6)


def test_opens_after_threshold_consecutive_failures() -> None:
    async def scenario() -> None:
        breaker, changes = breaker_with_log(threshold=3)
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()  # the count restarts
        breaker.record_failure()
        breaker.record_failure()
        assert state_of(breaker) is CircuitState.CLOSED
        assert changes == []
        breaker.record_failure()
        assert state_of(breaker) is CircuitState.OPEN
        assert changes == [CircuitState.OPEN]

    run_virtual(scenario())


def test_closed_circuit_lets_everyone_through_at_once() -> None:
    async def scenario() -> None:
        breaker, _ = breaker_with_log()
        callers = [Caller(breaker) for _ in range(100)]
        await settle()
        assert len(admitted(callers)) == 100

    run_virtual(scenario())


def test_waiters_block_while_open_then_exactly_one_probes() -> None:
    async def scenario() -> None:
        breaker, changes = breaker_with_log(probe_timeout_s=7200)
        open_now(breaker)
        callers = [Caller(breaker) for _ in range(5)]
        await asyncio.sleep(RESET_S - 0.01)
        assert admitted(callers) == []
        assert state_of(breaker) is CircuitState.OPEN

        await asyncio.sleep(0.02)
        [probe] = admitted(callers)
        assert probe.admitted_at == pytest.approx(RESET_S)
        assert state_of(breaker) is CircuitState.HALF_OPEN
        assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN]

        # However long the probe takes, nobody else goes, and nobody is failed for waiting.
        await asyncio.sleep(3600)
        assert admitted(callers) == [probe]
        assert not any(c.task.done() for c in callers)

        for caller in callers:
            caller.task.cancel()
        await asyncio.gather(*(c.task for c in callers), return_exceptions=True)

    run_virtual(scenario())


def test_successful_probe_closes_and_releases_every_waiter() -> None:
    async def scenario() -> None:
        breaker, changes = breaker_with_log()
        open_now(breaker)
        callers = [Caller(breaker) for _ in range(1000)]
        await asyncio.sleep(RESET_S + 0.01)
        [probe] = admitted(callers)
        probe.tell(Verdict.SUCCESS)
        await settle()
        assert state_of(breaker) is CircuitState.CLOSED
        assert len(admitted(callers)) == 1000
        assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]
        assert breaker.consecutive_failures == 0
        for caller in callers:
            caller.task.cancel()

    run_virtual(scenario())


def test_failed_probe_reopens_for_another_reset_period() -> None:
    async def scenario() -> None:
        breaker, changes = breaker_with_log()
        open_now(breaker)
        callers = [Caller(breaker) for _ in range(3)]
        await asyncio.sleep(RESET_S + 0.01)
        [first_probe] = admitted(callers)
        await asyncio.sleep(1.0)
        first_probe.tell(Verdict.FAILURE)
        await settle()
        assert state_of(breaker) is CircuitState.OPEN
        failed_at = now()

        await asyncio.sleep(RESET_S - 0.01)
        assert admitted(callers) == [first_probe]
        await asyncio.sleep(0.02)
        [second_probe] = [c for c in admitted(callers) if c is not first_probe]
        assert second_probe.admitted_at == pytest.approx(failed_at + RESET_S, abs=1e-5)
        assert changes == [
            CircuitState.OPEN,
            CircuitState.HALF_OPEN,
            CircuitState.OPEN,
            CircuitState.HALF_OPEN,
        ]
        second_probe.tell(Verdict.SUCCESS)
        await settle()
        assert len(admitted(callers)) == 3

    run_virtual(scenario())


@pytest.mark.parametrize("how", ["cancelled", "left without a verdict", "released"])
def test_probe_that_ends_without_verdict_does_not_wedge(how: str) -> None:
    async def scenario() -> None:
        breaker, _ = breaker_with_log()
        open_now(breaker)
        callers = [Caller(breaker) for _ in range(3)]
        await asyncio.sleep(RESET_S + 0.01)
        [probe] = admitted(callers)
        if how == "cancelled":
            probe.task.cancel()
        elif how == "left without a verdict":
            probe.tell(Verdict.LEAVE)
        else:
            probe.tell(Verdict.RELEASE)
        await settle()
        # The next waiter takes over at once, not after another reset period.
        [successor] = [c for c in admitted(callers) if c is not probe]
        assert successor.admitted_at == pytest.approx(RESET_S + 0.01, abs=1e-5)
        assert state_of(breaker) is CircuitState.HALF_OPEN
        successor.tell(Verdict.SUCCESS)
        await settle()
        assert all(c.admitted for c in callers)
        for caller in callers:
            caller.task.cancel()

    run_virtual(scenario())


def test_probe_that_never_answers_is_replaced_after_the_probe_timeout() -> None:
    async def scenario() -> None:
        breaker, changes = breaker_with_log(probe_timeout_s=20)
        open_now(breaker)
        callers = [Caller(breaker) for _ in range(3)]
        await asyncio.sleep(RESET_S + 0.01)
        [first] = admitted(callers)
        await asyncio.sleep(20 - 0.02)
        assert admitted(callers) == [first]
        await asyncio.sleep(0.02)
        [second] = [c for c in admitted(callers) if c is not first]
        assert second.admitted_at == pytest.approx(RESET_S + 20)
        assert state_of(breaker) is CircuitState.HALF_OPEN
        first.tell(Verdict.SUCCESS)  # a late verdict from the presumed-lost probe still counts
        await settle()
        assert state_of(breaker) is CircuitState.CLOSED
        assert len(admitted(callers)) == 3
        assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]

    run_virtual(scenario())


def test_release_from_a_task_that_is_not_the_probe_changes_nothing() -> None:
    async def scenario() -> None:
        breaker, _ = breaker_with_log()
        open_now(breaker)
        callers = [Caller(breaker) for _ in range(3)]
        await asyncio.sleep(RESET_S + 0.01)
        assert len(admitted(callers)) == 1
        breaker.record_released()  # from the test's own task
        await settle()
        assert len(admitted(callers)) == 1
        for caller in callers:
            caller.task.cancel()

    run_virtual(scenario())


def test_probe_asking_again_is_not_blocked_by_itself() -> None:
    async def scenario() -> None:
        breaker, _ = breaker_with_log()
        open_now(breaker)
        await asyncio.sleep(RESET_S)
        await breaker.wait_until_allowed()
        assert state_of(breaker) is CircuitState.HALF_OPEN
        async with asyncio.timeout(0.001):
            await breaker.wait_until_allowed()

    run_virtual(scenario())


def test_caller_arriving_after_reset_becomes_the_probe_at_once() -> None:
    async def scenario() -> None:
        breaker, changes = breaker_with_log()
        open_now(breaker)
        await asyncio.sleep(RESET_S * 3)
        assert state_of(breaker) is CircuitState.OPEN  # nobody asked; no timer was needed
        late = Caller(breaker)
        other = Caller(breaker)
        await settle()
        assert late.admitted and not other.admitted
        assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN]
        other.task.cancel()

    run_virtual(scenario())


def test_failures_reported_while_open_do_not_extend_the_outage() -> None:
    async def scenario() -> None:
        breaker, changes = breaker_with_log()
        open_now(breaker)
        caller = Caller(breaker)
        await asyncio.sleep(RESET_S / 2)
        for _ in range(10):  # late answers to requests sent before the circuit opened
            breaker.record_failure()
        await asyncio.sleep(RESET_S / 2 + 0.01)
        assert caller.admitted
        assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN]

    run_virtual(scenario())


def test_late_success_while_open_closes_the_circuit() -> None:
    async def scenario() -> None:
        breaker, changes = breaker_with_log()
        open_now(breaker)
        callers = [Caller(breaker) for _ in range(3)]
        await asyncio.sleep(1.0)
        breaker.record_success()
        await settle()
        assert len(admitted(callers)) == 3
        assert changes == [CircuitState.OPEN, CircuitState.CLOSED]

    run_virtual(scenario())


def test_cancelled_waiters_leave_nothing_behind() -> None:
    async def scenario() -> None:
        breaker, _ = breaker_with_log()
        open_now(breaker)
        callers = [Caller(breaker) for _ in range(50)]
        await asyncio.sleep(1.0)
        for caller in callers:
            caller.task.cancel()
        await asyncio.gather(*(c.task for c in callers), return_exceptions=True)
        await asyncio.sleep(RESET_S)
        late = Caller(breaker)
        await settle()
        assert late.admitted
        late.tell(Verdict.SUCCESS)
        await settle()
        assert state_of(breaker) is CircuitState.CLOSED

    run_virtual(scenario())


def test_failing_on_change_hook_does_not_break_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    def broken(state: CircuitState) -> None:
        raise RuntimeError("gauge exploded")

    async def scenario() -> None:
        breaker = CircuitBreaker(1, RESET_S, clock=asyncio.get_running_loop().time, on_change=broken)
        breaker.record_failure()
        assert state_of(breaker) is CircuitState.OPEN

    run_virtual(scenario())
    assert "on_change" in caplog.text


async def test_real_clock_probe_after_reset() -> None:
    loop = asyncio.get_running_loop()
    breaker = CircuitBreaker(1, 0.05)
    breaker.record_failure()
    started = loop.time()
    await asyncio.wait_for(breaker.wait_until_allowed(), timeout=2)
    assert loop.time() - started >= 0.04
    assert state_of(breaker) is CircuitState.HALF_OPEN
    breaker.record_success()
    await asyncio.wait_for(breaker.wait_until_allowed(), timeout=0.01)


def test_from_settings() -> None:
    settings = PlatformSettings(circuit_failure_threshold=4, circuit_reset_s=2.5, max_attempts=8)
    breaker = CircuitBreaker.from_settings(settings)
    assert (breaker.failure_threshold, breaker.reset_s) == (4, 2.5)
    assert breaker.probe_timeout_s == 2.5 + settings.timeout_s


def test_from_settings_opens_before_one_delivery_is_exhausted() -> None:
    settings = PlatformSettings(circuit_failure_threshold=10, max_attempts=3)
    assert CircuitBreaker.from_settings(settings).failure_threshold == 3


@pytest.mark.parametrize(
    ("threshold", "reset_s", "probe_timeout_s"), [(0, 1.0, None), (1, 0.0, None), (1, 1.0, 0.0)]
)
def test_rejects_nonsensical_settings(threshold: int, reset_s: float, probe_timeout_s: float | None) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, reset_s, probe_timeout_s=probe_timeout_s)
