"""Each input message decoded once per process, and its event_id checked against the store once.

Every pipeline of a process reads the same input messages, usually close together. The first to
reach a message decodes it and starts its conflict check (is this `event_id` known with other
content?); the others find both here. The cache is small and bounded: a pipeline far behind the
others decodes and checks again, and the store gives it the same answer.

The conflict decision itself is the store's (`check_event`: the first content seen for an
`event_id` is kept). Checks of one `event_id` reach the store in consumption order, whatever the
store's connection pool does, so the copy consumed first is the one kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiokafka.structs import ConsumerRecord

from connector.codec import decode_event, fingerprint
from connector.errors import InvalidEventError
from connector.models import OrderChangedEvent
from connector.pipeline.lanes import LaneTicket, OrderingLanes

log = logging.getLogger(__name__)

#: Asks the store whether an event's content is the one first seen for its id.
ConflictCheck = Callable[[str, str], Awaitable[bool]]


class Screened:
    """One input message as the pipelines see it: a valid event, or why it is not one."""

    __slots__ = ("_verdict", "error", "event")

    def __init__(
        self,
        event: OrderChangedEvent | None,
        error: InvalidEventError | None,
        verdict: asyncio.Task[bool] | None,
    ) -> None:
        self.event = event
        self.error = error
        self._verdict = verdict

    async def first_seen_content(self) -> bool:
        """True unless the event's id was first seen with other content (a conflict)."""
        if self._verdict is None:
            raise RuntimeError("an invalid message has no content to check")
        # shield: one pipeline that stops waiting must not cancel the check the others wait for.
        return await asyncio.shield(self._verdict)


class MessageScreen:
    """Decoded messages by (topic, partition, offset), the oldest dropped beyond `capacity`."""

    def __init__(self, check: ConflictCheck, max_message_bytes: int, capacity: int) -> None:
        self._check = check
        self._max_bytes = max_message_bytes
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, int, int], Screened] = OrderedDict()
        self._identities = OrderingLanes()
        self._checks: set[asyncio.Task[bool]] = set()

    def screen(self, record: ConsumerRecord) -> Screened:
        """Synchronous, called in consumption order; `record.value` is not None."""
        key = (record.topic, record.partition, record.offset)
        found = self._seen.get(key)
        if found is not None:
            return found
        try:
            event = decode_event(record.value, self._max_bytes)
        except InvalidEventError as exc:
            screened = Screened(None, exc, None)
        else:
            screened = Screened(event, None, self._start_check(event))
        self._seen[key] = screened
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return screened

    def _start_check(self, event: OrderChangedEvent) -> asyncio.Task[bool]:
        # The ticket is taken now, in consumption order; the check waits for earlier copies' checks.
        ticket = self._identities.take(event.event_id)
        task = asyncio.ensure_future(self._check_in_turn(ticket, event))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        return task

    async def _check_in_turn(self, ticket: LaneTicket, event: OrderChangedEvent) -> bool:
        try:
            await ticket.wait_turn()
            return await self._check(event.event_id, fingerprint(event))
        finally:
            ticket.finish()

    async def close(self) -> None:
        """Cancel checks nobody waits for any more (at shutdown)."""
        for task in self._checks:
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        self._seen.clear()
