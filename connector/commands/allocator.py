"""The C allocator's settings for a long-running process (glibc only; elsewhere nothing changes).

glibc serves allocations above a threshold with their own mapping and gives them back to the system
when freed, but it raises that threshold to the size of every such block freed, up to 32 MiB. The
connector frees blocks of a few hundred KiB all the time (fetched record batches, request and result
buffers): after the first few, they all come from the heap instead, interleaved with long-lived
objects, and the freed space is not given back. Through the 100 000-event backlog benchmark RSS
climbed to 187 MiB without these settings, and stayed near 150 MiB (peak 170) with them
(bench/README.md). A fixed threshold keeps such blocks in mappings of
their own; two arenas instead of eight per core keep the store's and the resolver's threads from
each holding a heap of their own. (A periodic `malloc_trim` was measured too, and bought nothing
more.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform

log = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: Blocks at least this large get a mapping of their own (glibc's starting value, kept fixed).
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError as exc:
        log.warning("could not load the C library: %s", exc)
        return None


def tune_allocator() -> bool:
    """Fix the mmap threshold and cap the arenas; False where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        fixed: int = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        capped: int = libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
    except AttributeError as exc:
        log.warning("could not tune the C allocator: %s", exc)
        return False
    return fixed == 1 and capped == 1
