"""The dispatcher's decisions, one at a time, over an adapter that answers from a script (no network)."""

from __future__ import annotations

import asyncio
from typing import Any

from connector.config import PlatformSettings
from connector.delivery.dispatcher import PlatformDispatcher, Ungated
from connector.models import ErrorCategory, OrderChangedEvent, Outcome, Platform
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor
from connector.platforms.auth import StaticHeaders
from connector.platforms.base import Attempt, PlatformAdapter, Verdict
from connector.platforms.http import PlatformRequest
from connector.platforms.transport import Transport
from connector.policies import CircuitState

REQUEST = PlatformRequest("PUT", "https://vu.example/api/v1/orders?id=1", (), b"{}")
RETRY = Attempt(Verdict.RETRY, 503, ErrorCategory.SERVER_ERROR, "vucustom answered 503")
APPLIED = Attempt(Verdict.APPLIED, 200)


class AlwaysSuperseded(Ungated):
    def superseded(self) -> bool:
        return True


class ScriptedAdapter(PlatformAdapter):
    """Answers each attempt with the next scripted `Attempt` (the last one repeats)."""

    platform = Platform.VUCUSTOM

    def __init__(self, settings: PlatformSettings, script: list[Attempt]) -> None:
        super().__init__(settings, Transport(), StaticHeaders([]), Redactor())
        self.script = list(script)
        self.sent = 0

    def build_request(self, event: OrderChangedEvent) -> PlatformRequest:
        return REQUEST

    async def attempt(self, request: PlatformRequest) -> Attempt:
        self.sent += 1
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def dispatcher(script: list[Attempt], **overrides: Any) -> tuple[PlatformDispatcher, ScriptedAdapter]:
    settings = PlatformSettings(
        base_url="https://vu.example",
        rate_limit_rps=0,
        backoff_base_s=0.001,
        backoff_max_s=0.002,
        circuit_reset_s=0.05,
        **overrides,
    )
    adapter = ScriptedAdapter(settings, script)
    return PlatformDispatcher(adapter, settings, Metrics()), adapter


async def deliver(platform: PlatformDispatcher, **kwargs: Any) -> Any:
    return await asyncio.wait_for(platform.deliver(REQUEST, **kwargs), timeout=10)


async def test_a_retryable_answer_is_retried_until_applied() -> None:
    platform, adapter = dispatcher([RETRY, RETRY, APPLIED], max_attempts=5, circuit_failure_threshold=5)
    report = await deliver(platform)
    assert (report.outcome, report.attempts, report.status_code) == (Outcome.APPLIED, 3, 200)
    assert adapter.sent == 3


async def test_a_rejection_ends_the_delivery_at_once_and_keeps_the_circuit_closed() -> None:
    reject = Attempt(Verdict.REJECT, 422, ErrorCategory.CLIENT_ERROR, "vucustom answered 422")
    platform, adapter = dispatcher([reject])
    report = await deliver(platform)
    assert (report.outcome, report.attempts, adapter.sent) == (Outcome.REJECTED, 1, 1)
    assert report.error.category is ErrorCategory.CLIENT_ERROR
    assert platform.circuit.state is CircuitState.CLOSED


async def test_the_retry_budget_ends_a_delivery_with_its_own_category() -> None:
    platform, adapter = dispatcher(
        [RETRY], max_attempts=1000, circuit_failure_threshold=1000, retry_budget_s=0.05
    )
    report = await deliver(platform)
    assert report.outcome is Outcome.EXHAUSTED
    assert report.error.category is ErrorCategory.RETRY_BUDGET
    assert adapter.sent == report.attempts > 1


async def test_a_lone_delivery_waits_out_an_open_circuit_instead_of_being_exhausted() -> None:
    # Three failures open the circuit (min(CIRCUIT_FAILURE_THRESHOLD, MAX_ATTEMPTS)) before the
    # delivery runs out of attempts; it probes until the platform answers again.
    platform, adapter = dispatcher(
        [RETRY, RETRY, RETRY, RETRY, RETRY, APPLIED], max_attempts=3, circuit_failure_threshold=10
    )
    assert platform.circuit.failure_threshold == 3
    report = await deliver(platform)
    assert report.outcome is Outcome.APPLIED
    assert adapter.sent == 6


async def test_a_superseded_delivery_sends_nothing() -> None:
    platform, adapter = dispatcher([APPLIED])
    report = await deliver(platform, turn=AlwaysSuperseded())
    assert (report.outcome, report.attempts, adapter.sent) == (Outcome.SUPERSEDED, 0, 0)


async def test_an_adapter_bug_is_a_failed_attempt_not_a_stalled_stream() -> None:
    class Broken(ScriptedAdapter):
        async def attempt(self, request: PlatformRequest) -> Attempt:
            self.sent += 1
            raise KeyError("bug")

    settings = PlatformSettings(
        base_url="https://vu.example",
        rate_limit_rps=0,
        max_attempts=1000,
        circuit_failure_threshold=1000,
        retry_budget_s=0.05,
        backoff_base_s=0.001,
        backoff_max_s=0.002,
    )
    platform = PlatformDispatcher(Broken(settings, [APPLIED]), settings, Metrics())
    report = await deliver(platform)
    assert report.outcome is Outcome.EXHAUSTED
    assert "internal error: KeyError" in report.error.message
