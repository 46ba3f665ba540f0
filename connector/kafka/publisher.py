"""Publishes result events and DLQ copies, and returns only once Kafka acknowledged them."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from connector.config import KafkaSettings
from connector.errors import DlqReason
from connector.kafka.client import producer_options
from connector.models import OrderSyncResult, Source
from connector.observability.tracecontext import TraceContext
from connector.policies.backoff import Backoff

log = logging.getLogger(__name__)

_MAX_HEADER_MESSAGE = 1024
#: The client or the broker refuses a record of this size; resending cannot help.
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


class Publisher:
    """Result and DLQ producer. Sends are retried until acknowledged: a result is never dropped."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(**producer_options(settings))

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish_result(
        self, result: OrderSyncResult, encoded: bytes, source: Source, trace: TraceContext | None = None
    ) -> None:
        """`trace`: the one the delivery's requests carried (README "Traces")."""
        topic = self._settings.success_topic if result.outcome.succeeded else self._settings.failure_topic
        headers = [("event_id", result.event_id.encode("utf-8")), *source.headers()]
        if trace is not None:
            headers.extend(trace.kafka_headers())
        await self._send(topic, encoded, key=result.order_number.encode("utf-8"), headers=headers)

    async def publish_dlq(
        self,
        value: bytes | None,
        key: bytes | None,
        reason: DlqReason,
        message: str,
        source_topic: str,
        partition: int,
        offset: int,
        trace: TraceContext | None = None,
    ) -> None:
        """`trace`: the input record's own (README "Traces")."""
        headers = [
            ("error.reason", reason.value.encode()),
            ("error.message", message[:_MAX_HEADER_MESSAGE].encode("utf-8", "replace")),
            *Source(source_topic, partition, offset).headers(),
        ]
        if trace is not None:
            headers.extend(trace.kafka_headers())
        try:
            await self._send(self._settings.dlq_topic, value, key=key, headers=headers)
        except _TOO_LARGE:
            # The DLQ topic refuses a copy this large: keep the record (headers say where the original
            # is, in the input topic) rather than stall the partition on a copy that can never land.
            size = str(len(value or b"")).encode()
            log.error(
                "DLQ copy of %s bytes refused as too large; publishing it without its value", size.decode()
            )
            await self._send(
                self._settings.dlq_topic, None, key=key, headers=[*headers, ("error.value_dropped", size)]
            )

    async def _send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                await self._producer.send_and_wait(topic, value, key=key, headers=headers)
                return
            except _TOO_LARGE:
                raise
            except KafkaError as exc:
                # The event stays in flight (and uncommitted) until its result is acknowledged.
                log.warning(
                    "publish to %s failed, retrying: %s", topic, exc, extra={"fields": {"topic": topic}}
                )
                await backoff.wait()
