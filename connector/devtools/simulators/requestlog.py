"""What a simulator received: one entry per order request, plus a count of token requests."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAXLEN = 100_000


@dataclass
class LoggedRequest:
    #: Monotonic arrival time.
    at: float
    method: str
    #: The path as received, still percent-encoded.
    raw_path: str
    #: The query string as received, still percent-encoded.
    query: str
    headers: tuple[tuple[str, str], ...]
    raw_body: bytes
    #: The body decoded as JSON; None when it was not JSON.
    body: Any
    #: The order the request addressed, decoded (set by the platform's handler).
    order_id: str | None = None
    #: The status answered; None while unanswered, or when the request was dropped or hung.
    status: int | None = None
    #: Monotonic time the answer was ready (None until then).
    answered_at: float | None = None
    #: The fault played instead of the platform's answer, if any.
    fault: str | None = None
    #: Extra facts a handler notes (e.g. the order state it answered with).
    notes: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


class RequestLog:
    """A bounded log the tests read, and can wait on (`wait_for`) instead of sleeping."""

    def __init__(self, maxlen: int = DEFAULT_MAXLEN) -> None:
        self.entries: deque[LoggedRequest] = deque(maxlen=maxlen)
        #: Requests to the token endpoint, whatever their answer.
        self.token_requests = 0
        self._changed = asyncio.Event()

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, entry: LoggedRequest) -> None:
        self.entries.append(entry)
        self.changed()

    def count_token_request(self) -> None:
        self.token_requests += 1
        self.changed()

    def changed(self) -> None:
        """Wake the waiters; called on every new entry and every answered one."""
        self._changed.set()
        self._changed = asyncio.Event()

    def answered(self, status: int | None = None) -> list[LoggedRequest]:
        """Entries answered with `status` (any answer when None)."""
        return [e for e in self if e.status is not None and (status is None or e.status == status)]

    def for_order(self, order_id: str) -> list[LoggedRequest]:
        return [e for e in self if e.order_id == order_id]

    def clear(self) -> None:
        self.entries.clear()
        self.token_requests = 0
        self.changed()

    async def wait_for(self, condition: Callable[[RequestLog], bool], timeout_s: float = 10.0) -> None:
        """Return once `condition(self)` holds; TimeoutError after `timeout_s` seconds."""
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                await self._changed.wait()
