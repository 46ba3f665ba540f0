"""Producing to and reading from the real test broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


@dataclass
class Topics:
    input: str
    success: str
    failure: str
    dlq: str
    partitions: int

    def env(self, group: str) -> dict[str, str]:
        return {
            "ORDER_SYNC_KAFKA__INPUT_TOPIC": self.input,
            "ORDER_SYNC_KAFKA__SUCCESS_TOPIC": self.success,
            "ORDER_SYNC_KAFKA__FAILURE_TOPIC": self.failure,
            "ORDER_SYNC_KAFKA__DLQ_TOPIC": self.dlq,
            "ORDER_SYNC_KAFKA__GROUP_ID": group,
        }

    def control_topics(self) -> dict[str, str]:
        """Control and status topics of the test's own (settings without the prefix): a pause must
        not outlive its test on the shared broker."""
        suffix = self.input.rsplit(".", 1)[1]
        return {"KAFKA__CONTROL_TOPIC": f"control.{suffix}", "KAFKA__STATUS_TOPIC": f"status.{suffix}"}


async def create_topics(bootstrap: str, partitions: int = 4, **admin_options: Any) -> Topics:
    """Fresh input, result and DLQ topics; `admin_options` for a broker behind TLS, say."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(
        f"orders.changed.{suffix}", f"succeeded.{suffix}", f"failed.{suffix}", f"dlq.{suffix}", partitions
    )
    admin = AIOKafkaAdminClient(**{"bootstrap_servers": bootstrap, **admin_options})
    try:
        await admin.start()
        await admin.create_topics(
            [
                NewTopic(name, num_partitions=partitions, replication_factor=1)
                for name in (topics.input, topics.success, topics.failure, topics.dlq)
            ]
        )
    finally:
        await admin.close()
    return topics


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    """Publish (key, value) pairs in order and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_with_headers(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
) -> None:
    """Publish (key, value, headers) in order, each acknowledged before the next."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def produce_events(bootstrap: str, topic: str, events: Iterable[dict[str, Any]]) -> None:
    await produce(bootstrap, topic, ((e["order"]["order_number"].encode(), orjson.dumps(e)) for e in events))


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        assert self.value is not None
        return orjson.loads(self.value)


class TopicReader:
    """Reads topics from the beginning without a group, accumulating everything seen."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self.records: list[Record] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self._consumer.start()
        tps = []
        for topic in self._topics:
            partitions = self._consumer.partitions_for_topic(topic)
            while not partitions:
                await self._consumer._client.force_metadata_update()
                partitions = self._consumer.partitions_for_topic(topic)
            tps.extend(TopicPartition(topic, p) for p in partitions)
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def of(self, topic: str) -> list[Record]:
        return [r for r in self.records if r.topic == topic]

    async def poll(self, timeout_s: float = 0.2) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000))
        for records in batches.values():
            for r in records:
                headers = {k: v.decode() for k, v in (r.headers or ())}
                self.records.append(Record(r.topic, r.partition, r.offset, r.key, r.value, headers))

    async def wait_for(
        self,
        condition: Callable[[TopicReader], bool],
        timeout_s: float,
        what: str = "",
        fail_on: str | None = None,
    ) -> None:
        """Poll until `condition` holds; fail at once if anything arrives on the `fail_on` topic."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition(self):
            if fail_on is not None and self.of(fail_on):
                raise AssertionError(f"unexpected record on {fail_on}: {self.of(fail_on)[0].value!r}")
            if loop.time() > deadline:
                counts = {t: len(self.of(t)) for t in self._topics}
                raise AssertionError(
                    f"timed out after {timeout_s}s waiting for {what or condition}: {counts}"
                )
            await self.poll()


async def end_offsets(bootstrap: str, topic: str, timeout_s: float = 10) -> dict[int, int]:
    """Each partition's high watermark, as seen in fetch responses.

    ListOffsets(latest) is not used: the embedded broker answers it with the last batch's
    base offset rather than the log end.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(consumer.highwater(tp) is None for tp in tps):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no high watermark for {topic}")
            await consumer.getmany(timeout_ms=100, max_records=1)
        return {tp.partition: consumer.highwater(tp) for tp in tps}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets (asked as a group member would; the admin API's
    OffsetFetch version is not understood by every Kafka-compatible broker)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        result = {}
        for partition in sorted(partitions):
            offset = await consumer.committed(TopicPartition(topic, partition))
            result[partition] = offset if offset is not None else 0
        return result
    finally:
        await consumer.stop()


#: Every platform's pipeline; processes in the tests enable all four unless a test says otherwise.
ALL_PLATFORMS = ("vucustom", "sellercloud", "elasticpath", "ventmere")


def pipeline_groups(group: str, platforms: Iterable[str] = ALL_PLATFORMS, intake: bool = True) -> list[str]:
    """The consumer groups of a connector whose GROUP_ID is `group`: the intake's and each platform's."""
    return [*([group] if intake else []), *(f"{group}.{platform}" for platform in platforms)]


async def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    timeout_s: float = 30,
    platforms: Iterable[str] = ALL_PLATFORMS,
    intake: bool = True,
) -> dict[str, dict[int, int]]:
    """Wait until every pipeline's group (the intake's and each platform's) has committed every
    partition up to its end offset; returns the committed offsets by group."""
    ends = await end_offsets(bootstrap, topic)
    groups = pipeline_groups(group, platforms, intake)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        committed = dict(
            zip(
                groups,
                await asyncio.gather(*(committed_offsets(bootstrap, g, topic) for g in groups)),
                strict=True,
            )
        )
        behind = {
            g: offsets
            for g, offsets in committed.items()
            if any(offsets.get(p, 0) < e for p, e in ends.items())
        }
        if not behind:
            return committed
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"groups {behind} never committed the end offsets {ends}")
        await asyncio.sleep(0.2)
