"""`order-sync run`: JSON logs, a tuned garbage collector and C allocator, and the connector on the
chosen event loop."""

from __future__ import annotations

import gc

from connector.app import serve
from connector.commands import eventloop
from connector.commands.allocator import tune_allocator
from connector.config import Settings
from connector.observability.logs import configure_logging
from connector.observability.redaction import Redactor, secrets_of

#: Allocations between two young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Collect less often, and never walk what start-up left alive.

    With CPython's defaults the collector ran hundreds of times a second at full load, and each full
    collection walked every live object (all in-flight events, tasks and futures): a fifth of the
    connector's CPU in the benchmarks (bench/README.md), and loop stalls of 100 ms and more. Memory
    stays bounded: the backlog benchmark checks peak RSS.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


def run_connector(settings: Settings) -> int:
    configure_logging(settings.log_level, Redactor(secrets_of(settings)))
    tune_allocator()
    tune_gc()
    return eventloop.run(serve(settings), settings.event_loop)
