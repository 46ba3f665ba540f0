"""Each input message decoded once per process, and its event_id checked against the store once.

Every pipeline of a process reads the same input messages, usually close together. The first to
reach a message decodes it and starts its conflict check (is this `event_id` known with other
content?); the others find both here. A message is kept only until every pipeline of the process
that holds its partition and has not passed it yet has read it, and only for the pipelines less than
the cache's capacity behind: a pipeline running far ahead (the intake through a backlog, say)
decodes without keeping, and the first of the others to arrive decodes again (without checking
again: see below) and keeps it for the rest. When the cache is full, nothing more is kept.

What was judged of each message (invalid and why, or valid and the conflict check's answer) is
remembered much longer, being small: a pipeline that decodes a message again skips the
hostile-input checks and the store.

The conflict decision itself is the store's (`check_event`: the first content seen for an
`event_id` is kept). Checks of one `event_id` reach the store in consumption order, whatever the
store's connection pool does, so the copy consumed first is the one kept.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from connector.codec import decode_accepted, decode_event, fingerprint
from connector.delivery.lanes import LaneTicket, OrderingLanes, await_shielded
from connector.errors import InvalidEventError
from connector.models import OrderChangedEvent

log = logging.getLogger(__name__)

#: What was found of a message: why it is not a valid event, or the check of its event_id.
Judged = InvalidEventError | asyncio.Future[bool] | bool

#: Asks the store whether an event's content is the one first seen for its id.
ConflictCheck = Callable[[str, str], Awaitable[bool]]


class Screened:
    """One input message as the pipelines see it: a valid event, or why it is not one."""

    __slots__ = ("_verdict", "error", "event")

    def __init__(
        self,
        event: OrderChangedEvent | None,
        error: InvalidEventError | None,
        verdict: asyncio.Future[bool] | None,
    ) -> None:
        self.event = event
        self.error = error
        self._verdict = verdict

    async def first_seen_content(self) -> bool:
        """True unless the event's id was first seen with other content (a conflict)."""
        return await first_seen_content(self.verdict())

    def verdict(self) -> asyncio.Future[bool]:
        """The conflict check, for callers that wait with a callback rather than an await."""
        if self._verdict is None:
            raise RuntimeError("an invalid message has no content to check")
        return self._verdict


async def first_seen_content(verdict: asyncio.Future[bool]) -> bool:
    """A message's conflict check answered: True unless its event_id was first seen with other
    content. For callers that keep only the check, not the decoded message."""
    # Shielded: one pipeline that stops waiting must not cancel the check the others wait for.
    return await await_shielded(verdict)


class _Judgments:
    """What was found of one partition's messages: a byte per offset over the last `span` offsets,
    the checks still under way, and why the invalid ones are invalid. A pipeline a whole backlog
    behind the intake still finds its answers, for a byte each."""

    __slots__ = ("_base", "_codes", "_errors", "_pending", "_span")

    _UNKNOWN, _FIRST_SEEN, _CONFLICT, _INVALID = 0, 1, 2, 3

    def __init__(self, span: int) -> None:
        self._span = span
        self._base = 0
        self._codes = bytearray()
        self._pending: dict[int, asyncio.Future[bool]] = {}
        self._errors: dict[int, InvalidEventError] = {}

    def get(self, offset: int) -> Judged | None:
        pending = self._pending.get(offset)
        if pending is not None:
            return pending
        index = offset - self._base
        code = self._codes[index] if 0 <= index < len(self._codes) else self._UNKNOWN
        if code == self._FIRST_SEEN:
            return True
        if code == self._CONFLICT:
            return False
        if code == self._INVALID:
            return self._errors.get(offset)
        return None

    def checking(self, offset: int, check: asyncio.Future[bool]) -> None:
        self._pending[offset] = check
        check.add_done_callback(functools.partial(self._answered, offset))

    def invalid(self, offset: int, error: InvalidEventError) -> None:
        self._errors[offset] = error
        self._put(offset, self._INVALID)

    def _answered(self, offset: int, check: asyncio.Future[bool]) -> None:
        if self._pending.get(offset) is check:
            del self._pending[offset]
        if not check.cancelled() and check.exception() is None:
            self._put(offset, self._FIRST_SEEN if check.result() else self._CONFLICT)

    def _put(self, offset: int, code: int) -> None:
        index = offset - self._base
        if not self._codes or not 0 <= index < self._span:
            if self._codes and index < 0:
                return  # older than what is kept
            # The first offset, or one a whole span ahead: start afresh from it.
            self._base, self._codes, index = offset, bytearray(), 0
        if index >= len(self._codes):
            self._codes.extend(bytes(index + 1 - len(self._codes)))
        self._codes[index] = code
        if len(self._codes) > self._span:
            drop = len(self._codes) - self._span // 2
            del self._codes[:drop]
            self._base += drop
            self._errors = {o: e for o, e in self._errors.items() if o >= self._base}


@dataclass(slots=True)
class _Kept:
    screened: Screened
    #: Pipelines expected to read the message that have not yet.
    readers: set[str]


class MessageScreen:
    """Decoded messages by (topic, partition, offset), kept for the pipelines still to read them."""

    def __init__(self, check: ConflictCheck, max_message_bytes: int, capacity: int, judged_span: int) -> None:
        self._check = check
        self._max_bytes = max_message_bytes
        self._capacity = capacity
        self._judged_span = judged_span
        self._kept: dict[tuple[str, int, int], _Kept] = {}
        #: What each recent message was found to be: why it is invalid, or its conflict check.
        #: Per partition, what was found of each recent message.
        self._judgments: dict[tuple[str, int], _Judgments] = {}
        #: Per partition, each local pipeline holding it and the next offset it will read (-1: unknown).
        self._positions: dict[tuple[str, int], dict[str, int]] = {}
        self._identities = OrderingLanes()
        self._checks: set[asyncio.Task[bool]] = set()

    def assigned(self, reader: str, partitions: Iterable[tuple[str, int]]) -> None:
        for tp in partitions:
            self._positions.setdefault(tp, {})[reader] = -1

    def revoked(self, reader: str, partitions: Iterable[tuple[str, int]]) -> None:
        gone = set(partitions)
        for tp in gone:
            self._positions.get(tp, {}).pop(reader, None)
        for key, kept in list(self._kept.items()):
            if key[:2] in gone:
                kept.readers.discard(reader)
                if not kept.readers:
                    del self._kept[key]

    def screen(self, record: ConsumerRecord, reader: str) -> Screened:
        """Synchronous, called by each pipeline in its consumption order; `record.value` is not None."""
        tp = (record.topic, record.partition)
        offset = record.offset
        positions = self._positions.setdefault(tp, {})
        positions[reader] = offset + 1
        key = (record.topic, record.partition, offset)
        kept = self._kept.get(key)
        if kept is not None:
            kept.readers.discard(reader)
            if not kept.readers:
                del self._kept[key]
            return kept.screened
        screened = self._decode(key, record.value)
        # Kept for the pipelines about to read it: not for one further behind than the cache holds
        # (it decodes for itself when it gets here), or the cache would fill with what a pipeline far
        # ahead decoded and have no room for what the pipelines close together could share.
        nearest = offset - self._capacity
        readers = {
            other
            for other, at in positions.items()
            if other != reader and at <= offset and (at > nearest or at < 0)
        }
        if readers and len(self._kept) < self._capacity:
            self._kept[key] = _Kept(screened, readers)
        return screened

    def _decode(self, key: tuple[str, int, int], raw: bytes) -> Screened:
        judgments = self._judgments.get(key[:2])
        if judgments is None:
            judgments = self._judgments[key[:2]] = _Judgments(self._judged_span)
        offset = key[2]
        judged = judgments.get(offset)
        if isinstance(judged, InvalidEventError):
            return Screened(None, judged, None)
        if isinstance(judged, bool):
            answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            answered.set_result(judged)
            return Screened(decode_accepted(raw), None, answered)
        if judged is not None:
            return Screened(decode_accepted(raw), None, judged)
        try:
            event = decode_event(raw, self._max_bytes)
        except InvalidEventError as exc:
            error = exc.with_traceback(None)
            judgments.invalid(offset, error)
            return Screened(None, error, None)
        check = self._start_check(event)
        judgments.checking(offset, check)
        return Screened(event, None, check)

    def _start_check(self, event: OrderChangedEvent) -> asyncio.Task[bool]:
        # The check holds the id and the fingerprint, not the decoded event: hundreds of checks wait
        # for the store at once while the intake runs through a backlog.
        content = fingerprint(event)
        # The ticket is taken now, in consumption order; the check waits for earlier copies' checks.
        ticket = self._identities.take(event.event_id)
        task = asyncio.ensure_future(self._check_in_turn(ticket, event.event_id, content))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        return task

    async def _check_in_turn(self, ticket: LaneTicket, event_id: str, content: str) -> bool:
        try:
            await ticket.wait_turn()
            return await self._check(event_id, content)
        finally:
            ticket.finish()

    async def close(self) -> None:
        """Cancel checks nobody waits for any more (at shutdown)."""
        for task in self._checks:
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        self._kept.clear()
        self._judgments.clear()
