"""Runs one platform's requests under its limits: circuit breaker, rate limit, concurrency, retries.

The dispatcher turns an already-built request into a `DeliveryReport`. It never fails a delivery
because the platform is down or throttles all requests: while the circuit is open, or while the
adapter's `classify` reported a platform-wide throttle, deliveries wait (and their time waiting
is charged neither to their retry budget nor, for a throttle, to their attempts). What an answer
means is the adapter's to say (`Attempt`); the dispatcher only acts on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from connector.config import PlatformSettings
from connector.control.pauses import Pauses
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


class SendPolicy:
    """What one delivery's sender says before each of its sends; the connection's own state (pause,
    circuit, throttle) is the dispatcher's. This one sends whatever comes, waiting in memory for a
    held connection: the stage and the drain give a delivery theirs (`Delivery.policy`)."""

    __slots__ = ()

    #: The sender can park the delivery: a held connection raises `ConnectionHeld` before any
    #: send instead of being waited for.
    can_park = False

    def superseded(self) -> bool:
        """A newer version of the order now waits for the same connection: send nothing more."""
        return False

    def park_now(self) -> bool:
        """With `can_park`: the delivery must wait in the store (one before it waits there)."""
        return False


#: Send, waiting in memory for whatever holds the connection.
SEND = SendPolicy()

#: A platform-wide throttle shorter than this is waited out in memory; a longer one parks.
HOLD_IN_MEMORY_S = 1.0


class ConnectionHeld(Exception):
    """The delivery's connection is held (circuit open, throttled, paused) and its caller parks it.

    Raised only before a request is sent: nothing of this delivery is in flight.
    """


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
        pauses: Pauses | None = None,
    ) -> None:
        self.adapter = adapter
        self.platform: Platform = adapter.platform
        self.connection = connection
        self._pauses = pauses
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

    @property
    def held(self) -> bool:
        """The connection takes no request now and will not for a while: an operator paused it, its
        circuit is not closed, or a platform-wide throttle holds it longer than `HOLD_IN_MEMORY_S`."""
        return (
            self.paused
            or self.circuit.state is not CircuitState.CLOSED
            or self._hold.remaining_s > HOLD_IN_MEMORY_S
        )

    @property
    def paused(self) -> bool:
        return self._pauses is not None and self._pauses.paused(self.platform, self.connection) is not None

    @property
    def throttled_for_s(self) -> float:
        """How long the platform-wide throttle in force lasts still (0: none)."""
        return self._hold.remaining_s

    @property
    def window(self) -> int:
        """Parked deliveries of this connection sent at once by its drain (a page)."""
        return 2 * self._max_concurrency

    async def _wait_resumed(self) -> None:
        if self._pauses is not None:
            await self._pauses.wait_resumed(self.platform, self.connection)

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

    async def deliver(self, request: PlatformRequest, policy: SendPolicy = SEND) -> DeliveryReport:
        """Send until an outcome; `policy` is asked before every send whether a newer version of the
        order now waits (then nothing more is sent for this one: `superseded`).

        When the policy `can_park`, instead of waiting for a held connection (or when it says
        `park_now`) this raises `ConnectionHeld` before sending. Otherwise the delivery waits for
        the circuit and the throttle in memory (the drain's probe does).
        """
        attempts = 0
        started = time.monotonic()
        waited = 0.0
        while True:
            waited += await self._wait_for_turn(policy)
            if policy.superseded():
                return DeliveryReport(Outcome.SUPERSEDED, None, attempts, None)
            attempt, queued = await self._send(request, policy)
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

    async def _wait_for_turn(self, policy: SendPolicy) -> float:
        """Wait out a pause, an open circuit and a throttle (or raise `ConnectionHeld` to park);
        the seconds waited, which are charged to no retry budget."""
        if policy.can_park and (self.held or policy.park_now()):
            raise ConnectionHeld
        wait_started = time.monotonic()
        await self._wait_resumed()
        await self.circuit.wait_until_allowed()
        await self._hold.wait()
        return time.monotonic() - wait_started

    async def _send(self, request: PlatformRequest, policy: SendPolicy) -> tuple[Attempt | None, float]:
        """One attempt under a slot and a token; None when superseded while queued. Also the
        seconds queued for the token and any hold that came meanwhile."""
        async with self._slots:
            # A token is taken only once a slot is held: tokens taken while queued for a slot
            # would leave together when slots free up, faster than RATE_LIMIT_RPS.
            wait_started = time.monotonic()
            await self._bucket.acquire()
            while self._hold.held or self.paused:
                # A throttle answered while this request queued holds it too: nothing is sent
                # between a platform-wide refusal and its reset time but what was already sent.
                # Its token is spent: sent late, it would add to the burst after the hold.
                if policy.can_park and self.held:
                    raise ConnectionHeld
                await self._wait_resumed()
                await self._hold.wait()
                await self._bucket.acquire()
            queued = time.monotonic() - wait_started
            if policy.can_park and policy.park_now():
                raise ConnectionHeld
            if policy.superseded():
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
