"""Which offset of a partition may be committed, given events that complete out of order."""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """Tracks one partition's in-flight offsets.

    Offsets are added in increasing order as they are consumed (gaps are fine: compaction and
    transaction markers leave some). `committable()` is the offset to commit: one past the
    highest offset below which every added offset has completed, so a commit never passes an
    incomplete event.
    """

    __slots__ = ("_done", "_last_added", "_next_commit", "_pending")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._last_added: int | None = None
        self._next_commit: int | None = None

    def add(self, offset: int) -> None:
        if self._last_added is not None and offset <= self._last_added:
            raise ValueError(f"offset {offset} added after {self._last_added}")
        self._last_added = offset
        self._pending.append(offset)

    def completed(self, offset: int) -> None:
        if offset in self._done:
            return
        self._done.add(offset)
        pending, done = self._pending, self._done
        while pending and pending[0] in done:
            head = pending.popleft()
            done.discard(head)
            self._next_commit = head + 1

    def committable(self) -> int | None:
        """The offset to commit (next to consume), or None when nothing has completed yet."""
        return self._next_commit

    @property
    def in_flight(self) -> int:
        return len(self._pending)
