"""Runs one platform's requests under its limits: circuit breaker, rate limit, concurrency, retries.

The dispatcher turns an already-built request into a `DeliveryReport`. It never fails a delivery
because the platform is down or throttles all requests: while the circuit is open, or while the
adapter's `classify` reported a platform-wide throttle, deliveries wait or park, as their
connection's gate says (`Turn`; their time waiting is charged neither to their retry budget nor,
for a throttle, to their attempts). What an answer means is the adapter's to say (`Attempt`); the
dispatcher only acts on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from connector.config import PlatformSettings
from connector.models import DEFAULT_CONNECTION, ErrorCategory, Outcome, Platform, ResultError
from connector.observability.metrics import NO_RESPONSE_CODE, Metrics, RetryWait
from connector.platforms.base import Attempt, PlatformAdapter, Verdict, WaitScope
from connector.platforms.http import PlatformRequest
from connector.policies import (
    CircuitBreaker,
    CircuitState,
    PlatformHold,
    RetryPolicy,
    RetryReason,
    TokenBucket,
)

log = logging.getLogger(__name__)


class ConnectionHeld(Exception):
    """The delivery must wait in the store, not in memory: its connection's gate said so (README
    "Isolation between connections"). Raised only before a request is sent: nothing of this
    delivery is in flight.
    """


class Turn(Protocol):
    """What a delivery's sender is asked before each request: may it send now? The connection's gate
    (`delivery/gate.py`) gives each delivery one, which answers from the pause, this circuit and
    throttle, the connection's backlog and the platform's window."""

    def may_send(self, dispatcher: PlatformDispatcher) -> bool:
        """Yes, at once, without waiting."""
        ...

    async def clear(self, dispatcher: PlatformDispatcher) -> float:
        """Return once the delivery may send (the seconds waited, charged to no retry budget); raise
        `ConnectionHeld` when it must park instead."""
        ...

    def superseded(self) -> bool:
        """A newer version of the order now waits for the same connection: send nothing more."""
        ...


class Ungated:
    """The turn of a delivery no gate watches (tests, tools): it waits in memory for the circuit
    and the throttle, and is never parked nor superseded."""

    __slots__ = ()

    def may_send(self, dispatcher: PlatformDispatcher) -> bool:
        return dispatcher.ready()

    async def clear(self, dispatcher: PlatformDispatcher) -> float:
        started = time.monotonic()
        while not dispatcher.ready():
            await dispatcher.wait_ready()
        return time.monotonic() - started

    def superseded(self) -> bool:
        return False


UNGATED = Ungated()


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    outcome: Outcome
    status_code: int | None
    attempts: int
    error: ResultError | None


def _error_from(attempt: Attempt, category: ErrorCategory | None = None, note: str = "") -> ResultError:
    message = attempt.message + (f" ({note})" if note else "")
    return ResultError(
        category=category or attempt.category or ErrorCategory.SERVER_ERROR,
        message=message,
        response_excerpt=attempt.response_excerpt,
    )


class PlatformDispatcher:
    """One connection's requests (README "Connections"): its adapter, rate, slots, circuit and hold."""

    def __init__(
        self,
        adapter: PlatformAdapter,
        settings: PlatformSettings,
        metrics: Metrics,
        connection: str = DEFAULT_CONNECTION,
    ) -> None:
        self.adapter = adapter
        self.platform: Platform = adapter.platform
        self.connection = connection
        #: The last failed attempt's message and when (Unix time), for `order-sync status`.
        self.last_error: tuple[str, float] | None = None
        self._metrics = metrics
        self._labels = (self.platform.value, connection)
        self._log_context = {"platform": self.platform.value, "connection": connection}
        self._retry = RetryPolicy.from_settings(settings)
        self._bucket = TokenBucket.from_settings(settings)
        self._hold = PlatformHold(on_hold_added=metrics.throttled_seconds.labels(*self._labels).inc)
        self._max_concurrency = settings.max_concurrency
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._circuit_gauge = metrics.circuit_open.labels(*self._labels)
        self._circuit_gauge.set(0)
        self.circuit = CircuitBreaker.from_settings(settings, on_change=self._on_circuit_change)
        self._requests = {
            code: metrics.platform_requests.labels(self.platform.value, code, connection)
            for code in (NO_RESPONSE_CODE,)
        }
        self._request_seconds = metrics.platform_request_seconds.labels(*self._labels)

    def ready(self) -> bool:
        """No throttle holds the connection and its circuit lets the calling task send."""
        return not self._hold.held and self.circuit.allows()

    async def wait_ready(self) -> None:
        """Wait for the circuit (as its probe, or until it closes) and for the throttle in force."""
        await self.circuit.wait_until_allowed()
        await self._hold.wait()

    @property
    def throttled_for_s(self) -> float:
        """How long the platform-wide throttle in force lasts still (0: none)."""
        return self._hold.remaining_s

    @property
    def window(self) -> int:
        """Parked deliveries of this connection sent at once by its drain (a page)."""
        return 2 * self._max_concurrency

    def _on_circuit_change(self, state: CircuitState) -> None:
        self._circuit_gauge.set(0 if state is CircuitState.CLOSED else 1)
        log.warning("circuit %s", state.value, extra=self._log_context)

    def _count_request(self, attempt: Attempt) -> None:
        code = str(attempt.status_code) if attempt.status_code is not None else NO_RESPONSE_CODE
        counter = self._requests.get(code)
        if counter is None:
            counter = self._metrics.platform_requests.labels(self.platform.value, code, self.connection)
            self._requests[code] = counter
        counter.inc()

    async def deliver(self, request: PlatformRequest, turn: Turn = UNGATED) -> DeliveryReport:
        """Send until an outcome. `turn` is asked before every request whether it may go now (it
        waits, or raises `ConnectionHeld` for the caller to park the delivery) and whether a newer
        version of the order now waits (then nothing more is sent for this one: `superseded`)."""
        attempts = 0
        started = time.monotonic()
        waited = 0.0
        while True:
            waited += await turn.clear(self)
            if turn.superseded():
                return DeliveryReport(Outcome.SUPERSEDED, None, attempts, None)
            attempt, queued = await self._send(request, turn)
            waited += queued
            if attempt is None:
                # Newer work arrived while this one queued for its slot or its token.
                return DeliveryReport(Outcome.SUPERSEDED, None, attempts, None)
            self._count_request(attempt)
            if self._throttled(attempt):
                continue
            attempts += 1
            report, delay = self._judge(attempt, attempts, time.monotonic() - started - waited)
            if report is not None:
                return report
            if delay is not None:
                await asyncio.sleep(delay)

    async def _send(self, request: PlatformRequest, turn: Turn) -> tuple[Attempt | None, float]:
        """One attempt under a slot and a token; None when superseded while queued. Also the
        seconds queued for the token and any hold that came meanwhile."""
        async with self._slots:
            # A token is taken only once a slot is held: tokens taken while queued for a slot
            # would leave together when slots free up, faster than RATE_LIMIT_RPS.
            wait_started = time.monotonic()
            await self._bucket.acquire()
            while not turn.may_send(self):
                # A throttle, a pause or a park that came while this request queued holds it too:
                # nothing is sent between a platform-wide refusal and its reset time but what was
                # already sent. Its token is spent: sent late, it would add to the burst after.
                await turn.clear(self)
                await self._bucket.acquire()
            queued = time.monotonic() - wait_started
            if turn.superseded():
                return None, queued
            return await self._attempt(request), queued

    async def _attempt(self, request: PlatformRequest) -> Attempt:
        sent_at = time.monotonic()
        try:
            attempt = await self.adapter.attempt(request)
        except Exception as exc:
            # A bug in an adapter must not stall the stream: count it as a failed attempt.
            log.exception("adapter failed unexpectedly", extra=self._log_context)
            attempt = Attempt(
                Verdict.RETRY, None, ErrorCategory.CONNECTION, f"internal error: {type(exc).__name__}"
            )
        except BaseException:
            self.circuit.record_released()
            raise
        self._request_seconds.observe(time.monotonic() - sent_at)
        return attempt

    def _throttled(self, attempt: Attempt) -> bool:
        """A platform-wide throttle: hold every request until its reset time, charge nobody."""
        if attempt.verdict is not Verdict.RETRY or attempt.wait_scope is not WaitScope.PLATFORM:
            return False
        # The platform answered (it is up) and throttles everyone.
        self.circuit.record_success()
        # An adapter names the reset time; without one, a second keeps this from spinning.
        hold_s = attempt.retry_after or 1.0
        self._hold.hold_for(hold_s)
        self._bucket.pause(hold_s)
        self._metrics.retries.labels(self.platform.value, RetryWait.THROTTLED, self.connection).inc()
        log.info(
            "platform throttled: %s",
            attempt.message,
            extra={**self._log_context, "status_code": attempt.status_code},
        )
        return True

    def _judge(
        self, attempt: Attempt, attempts: int, elapsed: float
    ) -> tuple[DeliveryReport | None, float | None]:
        """An attempt's consequence: the report that ends the delivery, or none and the delay before
        the next attempt (none: at once, waiting for the open circuit first)."""
        if attempt.verdict is Verdict.APPLIED:
            self.circuit.record_success()
            self._bucket.on_success()
            return DeliveryReport(Outcome.APPLIED, attempt.status_code, attempts, None), None
        self.last_error = (attempt.message, time.time())
        if attempt.verdict is Verdict.REJECT:
            # The platform answered: it is up, whatever it thought of this request.
            self.circuit.record_success()
            return DeliveryReport(Outcome.REJECTED, attempt.status_code, attempts, _error_from(attempt)), None
        if attempt.slow_down and self._bucket.rate_per_s:
            # Refused for our pace: the platform is up, and the token bucket owns the pace. An
            # open circuit would hold (park) the connection over what is no outage.
            self.circuit.record_success()
            self._bucket.throttle(attempt.retry_after)
        else:
            # Without a rate of ours to slow down, persistent 429s are for the circuit to hold.
            self.circuit.record_failure()
        decision = self._retry.next_delay(attempts, elapsed, attempt.retry_after)
        if decision.retry:
            reason = (attempt.category or ErrorCategory.SERVER_ERROR).value
            self._metrics.retries.labels(self.platform.value, reason, self.connection).inc()
            return None, decision.delay_s
        if self.circuit.state is not CircuitState.CLOSED:
            # An outage is not this delivery's fault: wait for the circuit instead of failing.
            self._metrics.retries.labels(self.platform.value, RetryWait.CIRCUIT_OPEN, self.connection).inc()
            return None, None
        category = (
            ErrorCategory.RETRY_BUDGET
            if decision.reason is not RetryReason.MAX_ATTEMPTS
            else attempt.category
        )
        note = f"gave up after {attempts} attempts: {decision.reason}"
        report = DeliveryReport(
            Outcome.EXHAUSTED, attempt.status_code, attempts, _error_from(attempt, category, note)
        )
        return report, None
