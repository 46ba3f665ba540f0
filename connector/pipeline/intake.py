"""The intake's stage: every input message is counted, and a bad or conflicting one copied to the DLQ.

The intake is the only writer of the DLQ, so each bad message is copied exactly once, whatever the
platforms' pipelines are doing; they skip the same messages silently.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from connector.config import INTAKE_PIPELINE
from connector.errors import DlqReason, EventConflictError
from connector.kafka.publisher import Publisher
from connector.observability.metrics import EventResult, Metrics
from connector.observability.tracecontext import TraceContext
from connector.pipeline.pipeline import Work
from connector.pipeline.screening import MessageScreen

log = logging.getLogger(__name__)


class IntakeStage:
    def __init__(self, screen: MessageScreen, publisher: Publisher, metrics: Metrics) -> None:
        self._screen = screen
        self._publisher = publisher
        self._metrics = metrics
        self._valid = metrics.events.labels(EventResult.VALID)
        self._invalid = metrics.events.labels(EventResult.INVALID)

    def take(self, record: ConsumerRecord) -> Work:
        if record.value is None:
            # A tombstone carries no change to apply: skipped and counted, not a DLQ record.
            self._metrics.tombstones.inc()
            return None
        screened = self._screen.screen(record, INTAKE_PIPELINE)
        if screened.error is not None:
            self._invalid.inc()
            return self._dead_letter(record, screened.error.reason, str(screened.error))
        self._valid.inc()
        verdict = screened.verdict()
        if verdict.done() and not verdict.cancelled() and verdict.exception() is None and verdict.result():
            return None
        # Settled by a callback when the check answers: no task of its own for the common case.
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        assert screened.event is not None
        # The callback holds the event's id, not the decoded event, while the check is under way.
        event_id = screened.event.event_id
        verdict.add_done_callback(functools.partial(self._on_verdict, record, event_id, settled))
        return settled

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        self._screen.assigned(INTAKE_PIPELINE, [(tp.topic, tp.partition) for tp in partitions])

    async def revoked(self, partitions: list[TopicPartition]) -> None:
        self._screen.revoked(INTAKE_PIPELINE, [(tp.topic, tp.partition) for tp in partitions])

    async def close(self) -> None:
        return None

    def _on_verdict(
        self,
        record: ConsumerRecord,
        event_id: str,
        settled: asyncio.Future[None],
        verdict: asyncio.Future[bool],
    ) -> None:
        if settled.done():
            return  # abandoned (rebalance, shutdown)
        if verdict.cancelled():
            settled.cancel()
        elif (exc := verdict.exception()) is not None:
            settled.set_exception(exc)
        elif verdict.result():
            settled.set_result(None)
        else:
            conflict = EventConflictError(f"event_id {event_id} was seen with different content")
            copying = asyncio.ensure_future(self._dead_letter(record, conflict.reason, str(conflict)))
            copying.add_done_callback(functools.partial(_settle_from, settled))
            settled.add_done_callback(lambda _: copying.cancel())

    async def _dead_letter(self, record: ConsumerRecord, reason: DlqReason, message: str) -> None:
        trace = TraceContext.from_headers(record.headers) if record.headers else None
        await self._publisher.publish_dlq(
            record.value, record.key, reason, message, record.topic, record.partition, record.offset, trace
        )
        self._metrics.dlq.labels(reason.value).inc()
        log.warning(
            "message sent to DLQ: %s",
            message,
            extra={
                "fields": {"reason": reason.value},
                "partition": record.partition,
                "offset": record.offset,
                "trace_id": trace.trace_id if trace is not None else None,
            },
        )


def _settle_from(settled: asyncio.Future[None], done: asyncio.Future[None]) -> None:
    if settled.done():
        return
    if done.cancelled():
        settled.cancel()
    elif (exc := done.exception()) is not None:
        settled.set_exception(exc)
    else:
        settled.set_result(None)
