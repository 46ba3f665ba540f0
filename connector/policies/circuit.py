"""A platform's circuit breaker: stop sending while it keeps failing, probe it now and then."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from enum import StrEnum

from connector.config import PlatformSettings

logger = logging.getLogger(__name__)


class CircuitState(StrEnum):
    """The breaker's state (reported through `on_change`, e.g. to `order_sync_circuit_open`)."""

    #: Requests flow.
    CLOSED = "closed"
    #: The platform keeps failing; callers wait until `reset_s` has passed.
    OPEN = "open"
    #: `reset_s` has passed; one probe is (or may be) in flight, everyone else still waits.
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Holds a platform's deliveries back while it fails, without failing them.

    README, "Guarantees and how they are kept" (outages) and "Differences from the contract" (threshold).

    - CLOSED: `wait_until_allowed()` returns at once. `record_failure()` counts consecutive
      retryable failures (`record_success()` resets the count); at `failure_threshold` the
      circuit opens.
    - OPEN: callers wait, indefinitely and without polling (one timer per open period, armed
      only while someone waits); their own shutdown cancels them. After `reset_s` the circuit
      goes HALF_OPEN.
    - HALF_OPEN: exactly one caller is let through as the probe; the others keep waiting.
      `record_success()` closes the circuit and releases every waiter; `record_failure()` opens
      it again for another `reset_s`.

    The probe is the task that called `wait_until_allowed()`, so call it directly from the
    delivery's task (on Python 3.11, `asyncio.wait_for` would run it in a task of its own). A
    probe that ends without a verdict must not wedge the breaker: its slot is freed, and the next
    waiter becomes the probe, when its task calls `record_released()`, when its task finishes
    (returns, raises or is cancelled) without recording, and, as a last resort for a task that
    lives on and forgets, after `probe_timeout_s` (default `reset_s`).

    The caller decides what counts: only retryable failures (timeouts, connection errors, 408,
    429, 5xx) should be recorded as failures. Any answer that shows the platform is up may be
    recorded as a success, from any task, in any state. Failures recorded while OPEN, by
    requests sent before it opened, are ignored: they say nothing new and must not prolong the
    outage.
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
        *,
        probe_timeout_s: float | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not reset_s > 0:
            raise ValueError("reset_s must be positive")
        if probe_timeout_s is not None and not probe_timeout_s > 0:
            raise ValueError("probe_timeout_s must be positive")
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self.probe_timeout_s = probe_timeout_s if probe_timeout_s is not None else reset_s
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._reopens_at = 0.0
        self._probe_out = False
        self._probe_task: asyncio.Task[object] | None = None
        self._probe_expires_at = 0.0
        # Set and replaced on every change that may let a waiter through; waiters then re-check.
        self._changed: asyncio.Event | None = None
        # At most one timer, for the next change that happens by itself (reset or probe expiry).
        # It is cancelled on every change, so when it fires its premise still holds.
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_settings(
        cls, settings: PlatformSettings, on_change: Callable[[CircuitState], None] | None = None
    ) -> CircuitBreaker:
        """The one way a platform's breaker is built from its settings.

        It opens after min(`CIRCUIT_FAILURE_THRESHOLD`, `MAX_ATTEMPTS`) consecutive failures: one
        delivery's `MAX_ATTEMPTS` failures must open the circuit before they exhaust the delivery,
        or with little traffic an outage would fail deliveries instead of holding them (README,
        "Differences from the contract, and choices it leaves open").
        """
        # A probe is presumed lost only once it has had a full request timeout on top of the reset.
        return cls(
            min(settings.circuit_failure_threshold, settings.max_attempts),
            settings.circuit_reset_s,
            on_change=on_change,
            probe_timeout_s=settings.circuit_reset_s + settings.timeout_s,
        )

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allows(self) -> bool:
        """Whether the calling task may send now without waiting: CLOSED, or it holds the probe."""
        if self._state is CircuitState.CLOSED:
            return True
        return (
            self._state is CircuitState.HALF_OPEN
            and self._probe_out
            and self._probe_task is not None
            and self._probe_task is _current_task()
        )

    async def wait_until_allowed(self) -> None:
        """Return when this caller may send a request: at once while CLOSED, else as the probe or after."""
        while True:
            if self._state is CircuitState.CLOSED:
                return
            if self._state is CircuitState.OPEN and self._clock() >= self._reopens_at:
                self._enter_half_open()
            if self._state is CircuitState.HALF_OPEN:
                if self._probe_out and self._clock() >= self._probe_expires_at:
                    self._expire_probe()
                if not self._probe_out:
                    self._take_probe()
                    return
                if self._probe_task is not None and self._probe_task is _current_task():
                    # The probe's own task asking again must not wait for itself.
                    return
            if self._changed is None:
                self._changed = asyncio.Event()
            changed = self._changed
            self._arm_timer()
            await changed.wait()

    def record_success(self) -> None:
        """The platform answered: close the circuit (if open) and let everyone through."""
        self._failures = 0
        self._release_probe()
        if self._state is not CircuitState.CLOSED:
            self._transition(CircuitState.CLOSED)

    def record_failure(self) -> None:
        """A retryable failure: count it while CLOSED; a failed probe re-opens the circuit."""
        if self._state is CircuitState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()
        elif self._state is CircuitState.HALF_OPEN:
            self._release_probe()
            self._open()

    def record_released(self) -> None:
        """The calling task held the probe and gives it up without a verdict; others ignore this."""
        if self._probe_out and self._probe_task is _current_task():
            self._release_probe()
            self._notify()

    def _open(self) -> None:
        self._reopens_at = self._clock() + self.reset_s
        self._transition(CircuitState.OPEN)

    def _enter_half_open(self) -> None:
        self._transition(CircuitState.HALF_OPEN)

    def _take_probe(self) -> None:
        self._cancel_timer()
        self._probe_out = True
        self._probe_expires_at = self._clock() + self.probe_timeout_s
        self._probe_task = _current_task()
        if self._probe_task is not None:
            self._probe_task.add_done_callback(self._on_probe_task_done)

    def _release_probe(self) -> None:
        self._cancel_timer()
        if self._probe_task is not None:
            self._probe_task.remove_done_callback(self._on_probe_task_done)
        self._probe_out = False
        self._probe_task = None

    def _expire_probe(self) -> None:
        logger.warning(
            "circuit probe gave no verdict within %.1fs; letting another through", self.probe_timeout_s
        )
        self._release_probe()
        self._notify()

    def _on_probe_task_done(self, task: asyncio.Task[object]) -> None:
        if self._probe_task is task:
            self._release_probe()
            self._notify()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            return
        if self._state is CircuitState.OPEN:
            due = self._reopens_at
        elif self._state is CircuitState.HALF_OPEN and self._probe_out:
            due = self._probe_expires_at
        else:
            return
        delay = max(0.0, due - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        # Act on the timer rather than re-read the clock: the loop may fire it a hair early, and
        # a re-armed near-zero timer would only spin.
        if self._state is CircuitState.OPEN:
            self._enter_half_open()
        elif self._state is CircuitState.HALF_OPEN and self._probe_out:
            self._expire_probe()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _transition(self, state: CircuitState) -> None:
        self._cancel_timer()
        self._state = state
        self._notify()
        if self._on_change is not None:
            try:
                self._on_change(state)
            except Exception:
                # A broken metrics hook must not turn into failed deliveries.
                logger.exception("circuit breaker on_change callback failed")

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop: called from plain synchronous code
        return None
