"""The event loop the long-running commands run on: uvloop by default, asyncio's own on request.

uvloop (libuv) runs the same asyncio code with a cheaper loop and cheaper sockets: in the benchmarks
it cut order-sync's CPU per event by 10-20% (bench/README.md). `ORDER_SYNC_EVENT_LOOP=asyncio` is the
way back, e.g. to rule the loop out when chasing a problem.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

EventLoopName = Literal["uvloop", "asyncio"]


def run(main: Coroutine[Any, Any, T], loop: EventLoopName = "uvloop") -> T:
    """`asyncio.run(main)` on the chosen loop; asyncio's own where uvloop is not installed."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            # uvloop has no Windows build; the connector works the same on asyncio's loop.
            log.warning("uvloop is not installed; running on asyncio's event loop")
        else:
            return uvloop.run(main)
    return asyncio.run(main)
