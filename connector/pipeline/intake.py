"""The intake's stage: every input message is counted, and a bad or conflicting one copied to the DLQ.

The intake is the only writer of the DLQ, so each bad message is copied exactly once, whatever the
platforms' pipelines are doing; they skip the same messages silently.
"""

from __future__ import annotations

import logging

from aiokafka.structs import ConsumerRecord

from connector.errors import DlqReason
from connector.metrics import Metrics
from connector.pipeline.pipeline import Work
from connector.pipeline.screening import MessageScreen, Screened
from connector.publisher import Publisher

log = logging.getLogger(__name__)


class IntakeStage:
    def __init__(self, screen: MessageScreen, publisher: Publisher, metrics: Metrics) -> None:
        self._screen = screen
        self._publisher = publisher
        self._metrics = metrics
        self._valid = metrics.events.labels("valid")
        self._invalid = metrics.events.labels("invalid")

    def take(self, record: ConsumerRecord) -> Work:
        if record.value is None:
            # A tombstone carries no change to apply: skipped and counted, not a DLQ record.
            self._metrics.tombstones.inc()
            return None
        screened = self._screen.screen(record)
        if screened.error is not None:
            self._invalid.inc()
            return self._dead_letter(record, screened.error.reason, str(screened.error))
        self._valid.inc()
        return self._check_conflict(record, screened)

    async def _check_conflict(self, record: ConsumerRecord, screened: Screened) -> None:
        if await screened.first_seen_content():
            return
        assert screened.event is not None
        message = f"event_id {screened.event.event_id} was seen with different content"
        await self._dead_letter(record, DlqReason.CONFLICT, message)

    async def _dead_letter(self, record: ConsumerRecord, reason: DlqReason, message: str) -> None:
        await self._publisher.publish_dlq(
            record.value, record.key, reason, message, record.topic, record.partition, record.offset
        )
        self._metrics.dlq.labels(reason.value).inc()
        log.warning(
            "message sent to DLQ: %s",
            message,
            extra={
                "fields": {"reason": reason.value},
                "partition": record.partition,
                "offset": record.offset,
            },
        )
