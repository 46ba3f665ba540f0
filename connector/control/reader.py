"""Every replica reads the control topic from its beginning, without a consumer group, and applies
each record to its `Pauses`: the same records, so the same pauses, on every replica, after every
restart. A record that is not a command is logged and ignored; the connector goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from connector.config import KafkaSettings
from connector.control.pauses import Pauses
from connector.control.records import ControlRecord, ControlRecordError
from connector.kafka.client import client_options
from connector.policies.backoff import Backoff

log = logging.getLogger(__name__)

#: The longest a fetch of the control topic waits: a pause is applied within about this much.
POLL_MS = 500
#: Control and status topics keep the newest record per key.
COMPACTED = {"cleanup.policy": "compact"}


async def ensure_compacted_topic(settings: KafkaSettings, name: str) -> None:
    """Create `name` (one partition, compacted) unless it exists. Where the connector may not create
    topics (ACLs), an operator creates it (README "Operator controls"); the error is only logged."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(name, 1, 1, topic_configs=COMPACTED)])
    except KafkaError as exc:
        log.warning("cannot create topic %s (%s); it must exist for operator controls", name, exc)
    finally:
        await admin.close()


class ControlReader:
    def __init__(self, settings: KafkaSettings, pauses: Pauses) -> None:
        self._settings = settings
        self._topic = settings.control_topic
        self._pauses = pauses
        #: True once everything on the topic at start-up has been applied.
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled; Kafka errors are retried with backoff."""
        backoff = Backoff(0.5, 10.0)
        await ensure_compacted_topic(self._settings, self._topic)
        while True:
            try:
                await self._read()
            except KafkaError as exc:
                log.warning(
                    "control topic %s unreadable (%s); retrying in %.1fs", self._topic, exc, backoff.delay
                )
                await backoff.wait()

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=min(self._settings.fetch_max_wait_ms, POLL_MS),
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self._topic)
            while not partitions:
                await asyncio.sleep(1.0)
                await consumer.topics()
                partitions = consumer.partitions_for_topic(self._topic)
            tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                batches = await consumer.getmany(timeout_ms=POLL_MS)
                for records in batches.values():
                    for record in records:
                        self._apply(record)
                if not self.caught_up.is_set() and all(
                    await asyncio.gather(*(self._reached(consumer, tp, ends[tp]) for tp in tps))
                ):
                    self.caught_up.set()
        finally:
            await consumer.stop()

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
        return bool(await consumer.position(tp) >= end)

    def _apply(self, record: ConsumerRecord) -> None:
        try:
            target, command = ControlRecord.decode(record.key, record.value)
        except ControlRecordError as exc:
            log.warning(
                "control record ignored: %s",
                exc,
                extra={"partition": record.partition, "offset": record.offset},
            )
            return
        self._pauses.apply(target, command)
