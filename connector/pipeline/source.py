"""One consumer group's Kafka client: join, fetch no more than the free capacity, pause, commit.

Each pipeline has its own group, so its offsets, its pause state and its lag are its own. This
module is the only one in the pipeline that talks to aiokafka's consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from connector.config import KafkaSettings
from connector.kafka.client import StartRetries, consumer_options
from connector.policies import Backoff

log = logging.getLogger(__name__)

Fetched = dict[TopicPartition, list[ConsumerRecord]]


class Rebalance(Protocol):
    async def on_revoked(self, revoked: list[TopicPartition]) -> None: ...

    async def on_assigned(self, assigned: list[TopicPartition]) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka calls revoke before assign; committing inside revoke is the documented pattern."""

    def __init__(self, owner: Rebalance) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._owner.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._owner.on_assigned(list(assigned))


class GroupConsumer:
    def __init__(self, settings: KafkaSettings, group_id: str, pipeline: str) -> None:
        self.group_id = group_id
        self._settings = settings
        self._pipeline = pipeline
        self._client = AIOKafkaConsumer(**{**consumer_options(settings, pipeline), "group_id": group_id})

    async def start(self, listener: Rebalance, stopping: asyncio.Event) -> None:
        """Connect, retrying with backoff while the broker is unreachable, then subscribe.

        In this order `start` returns once connected, without the group's first assignment (aiokafka
        waits for it when the subscription comes first): the pipeline fetches at once, and so keeps
        its group membership alive and sees its coordinator's errors, however long another pipeline's
        group takes to form. Joining is `fetch`'s to wait for; `on_assigned` marks it.
        """
        backoff = Backoff(0.5, 10.0)
        retries = StartRetries(self._settings, log)
        while True:
            try:
                await self._client.start()
                break
            except KafkaError as exc:
                if stopping.is_set():
                    raise
                await retries.failed(exc, backoff.delay, extra={"pipeline": self._pipeline})
                await backoff.wait()
        self._client.subscribe([self._settings.input_topic], listener=_Listener(listener))

    async def stop(self) -> None:
        await self._client.stop()

    async def fetch(self, max_records: int, timeout_ms: int = 200) -> Fetched:
        result: Fetched = await self._client.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return result

    async def keep_alive(self) -> None:
        """While paused: `getmany` keeps the member alive and returns nothing of a paused partition.

        A partition assigned during the call (a rebalance) starts unpaused, so `getmany` may return
        its records; they are given back (`rewind`), never dropped: aiokafka's position moved past
        them, and nothing would fetch them again before a restart.
        """
        fetched: Fetched = await self._client.getmany(timeout_ms=100)
        for tp, records in fetched.items():
            if records:
                self.rewind(tp, records[0].offset)

    def rewind(self, tp: TopicPartition, offset: int) -> None:
        """Fetch `tp` again from `offset` (records fetched but not taken); nothing if no longer ours."""
        if tp in self._client.assignment():
            self._client.seek(tp, offset)

    def pause(self, partitions: Collection[TopicPartition] | None = None) -> None:
        self._client.pause(*(self._client.assignment() if partitions is None else partitions))

    def resume(self) -> None:
        self._client.resume(*self._client.assignment())

    async def commit(self, offsets: dict[TopicPartition, int]) -> bool:
        """Commit; False when it failed (retried on the next tick: at worst work is redone, never lost)."""
        try:
            await self._client.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except KafkaError as exc:
            log.warning("commit failed: %s", exc, extra={"pipeline": self._pipeline})
            return False
        return True

    async def committed(self, tp: TopicPartition) -> int | None:
        try:
            offset: int | None = await self._client.committed(tp)
        except KafkaError as exc:
            log.debug("committed offset unknown: %s", exc, extra={"pipeline": self._pipeline})
            return None
        return offset

    async def end_offsets(
        self, partitions: Collection[TopicPartition], paused: bool
    ) -> dict[TopicPartition, int]:
        """Each partition's log end. While fetching, every fetch response brings the high watermark;
        while paused none does, and ListOffsets is asked (only then: a request of its own that the
        broker may answer after the fetches queued on the same connection, delaying them).

        The larger of the two: on Apache Kafka they agree; some Kafka-compatible brokers answer
        ListOffsets with the last batch's base offset.
        """
        ends: dict[TopicPartition, int] = {}
        listed: dict[TopicPartition, int] = {}
        if paused:
            try:
                listed = await self._client.end_offsets(list(partitions))
            except KafkaError as exc:
                log.debug("end offsets unknown: %s", exc, extra={"pipeline": self._pipeline})
        for tp in partitions:
            known = [o for o in (self._client.highwater(tp), listed.get(tp)) if o is not None]
            if known:
                ends[tp] = max(known)
        return ends
