"""An event loop on virtual time, so timing tests are exact and take no wall-clock time.

The loop's clock only moves when nothing is ready to run: it then jumps straight to the next
timer. `asyncio.sleep`, `call_later` and `wait_for` work unchanged; pass `loop.time` as the
policy's clock. A test that waits for something no timer will ever bring fails at once instead
of hanging.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualTimeDeadlock(RuntimeError):
    """Every task is waiting, and no timer is scheduled that could wake one."""


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Real file descriptors (the loop's self-pipe) are still polled, just never waited on.
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if events:
            return events
        if timeout is None:
            raise VirtualTimeDeadlock("nothing is ready and no timer is scheduled")
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


def now() -> float:
    return asyncio.get_running_loop().time()
