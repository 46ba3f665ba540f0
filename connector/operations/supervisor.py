"""The process's background tasks, supervised: none dies in silence (README "Background tasks").

A task that fails is logged once, with its traceback and its name, and counted in
`order_sync_background_task_failures_total{task}`. Then, by the task's policy:

- `Policy.RESTART`: it starts again after a backoff (0.5 s doubling to 30 s). A task that fails
  `MAX_FAILURES_IN_A_ROW` times without a healthy `HEALTHY_RUN_S` between is given up: the process
  is then unhealthy, as for `Policy.FATAL`.
- `Policy.FATAL`: it is not restarted; `/healthz` answers 503 naming it, so that Kubernetes
  restarts the pod (its state cannot be trusted after the failure, and a fresh process resumes from
  what Kafka and the store hold).

A task that returns is done (the purger returns at shutdown); cancelling is how they stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any

from prometheus_client import Counter

from connector.policies.backoff import Backoff

log = logging.getLogger(__name__)

#: Failures in a row after which a restartable task is given up (the process turns unhealthy).
MAX_FAILURES_IN_A_ROW = 5
#: A run at least this long counts as healthy: the failures in a row start again from zero.
HEALTHY_RUN_S = 60.0
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class Policy(StrEnum):
    """What follows a background task's failure."""

    #: Started again after a backoff; given up (unhealthy) after `MAX_FAILURES_IN_A_ROW`.
    RESTART = "restart"
    #: Not restarted: `/healthz` fails and Kubernetes restarts the pod.
    FATAL = "fatal"


class Supervisor:
    def __init__(self, failures: Counter | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._failures = failures
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Tasks given up, with the last error: the process is unhealthy while any is.
        self.given_up: dict[str, str] = {}

    @property
    def healthy(self) -> bool:
        return not self.given_up

    def liveness(self) -> dict[str, bool]:
        """For `/healthz`: one check per task given up (False), none while all run."""
        return {f"task:{name}": False for name in self.given_up}

    def start(self, name: str, factory: TaskFactory, policy: Policy) -> asyncio.Task[None]:
        """Run `factory()` under `policy` until it returns or `stop` cancels it."""
        task = asyncio.create_task(self._supervise(name, factory, policy), name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))
        return task

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]

    async def stop(self) -> None:
        """Cancel every task and wait for them."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, factory: TaskFactory, policy: Policy) -> None:
        backoff = Backoff(RESTART_FIRST_S, RESTART_MAX_S)
        in_a_row = 0
        while True:
            started = self._clock()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._clock() - started >= HEALTHY_RUN_S:
                    in_a_row = 0
                    backoff.reset()
                in_a_row += 1
                if self._failures is not None:
                    self._failures.labels(name).inc()
                restart = policy is Policy.RESTART and in_a_row < MAX_FAILURES_IN_A_ROW
                log.error(
                    "background task %s failed (%s); %s",
                    name,
                    f"{type(exc).__name__}: {exc}",
                    f"restarting in {backoff.delay:.1f}s"
                    if restart
                    else "not restarted: the process is unhealthy",
                    exc_info=exc,
                    extra={"fields": {"task": name, "failures_in_a_row": in_a_row}},
                )
                if not restart:
                    self.given_up[name] = f"{type(exc).__name__}: {exc}"
                    return
                await backoff.wait()
