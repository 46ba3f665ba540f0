"""`order-sync replay`: re-drive failed work once an operator fixed its cause.

From the failure topic: each matching failure result names an event and a platform; the original
event is found in the input topic and published again under a new `event_id` (with `replay_of`
naming the original), targeting only the platforms that failed. From the DLQ: the original bytes
are published again (a parseable event gets a new `event_id` and `replay_of`). A replay carries the
original record's `traceparent`: it is the same change, so its deliveries join the same trace.

Dry-run unless `yes`: it prints what it would publish.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connector.codec import decode_event
from connector.config import KafkaSettings
from connector.errors import DlqReason, InvalidEventError
from connector.kafka.client import client_options, kafka_errors, producer_options, stop_consumer
from connector.models import Outcome, Platform
from connector.observability.tracecontext import TraceContext


class ReplaySource(StrEnum):
    FAILURES = "failures"
    DLQ = "dlq"


@dataclass(frozen=True)
class ReplayFilter:
    platforms: frozenset[Platform] = frozenset()
    outcomes: frozenset[Outcome] = frozenset()
    reasons: frozenset[DlqReason] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def admits_time(self, moment: datetime) -> bool:
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)


@dataclass(frozen=True)
class Replay:
    key: bytes | None
    value: bytes
    description: str
    trace: TraceContext | None = None


async def _read_topic(settings: KafkaSettings, topic: str) -> AsyncIterator[Any]:
    """Every record of `topic` up to its high watermark at the time of the call."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    try:
        await consumer.start()
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int | None] = dict.fromkeys(tps)
        positions: dict[TopicPartition, int] = dict.fromkeys(tps, 0)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp in tps:
                if ends[tp] is None:
                    ends[tp] = consumer.highwater(tp)
            for tp, records in batches.items():
                for record in records:
                    positions[tp] = record.offset + 1
                    yield record
            if all(end is not None and positions[tp] >= end for tp, end in ends.items()):
                return
            if not batches and all(end is not None for end in ends.values()):
                # Nothing more to read (the log may end in non-record entries).
                return
    finally:
        await stop_consumer(consumer)


def _timestamp(record: Any) -> datetime:
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


async def plan_failure_replays(settings: KafkaSettings, wanted: ReplayFilter) -> list[Replay]:
    failed: dict[str, set[Platform]] = defaultdict(set)
    async for record in _read_topic(settings, settings.failure_topic):
        try:
            result = orjson.loads(record.value)
            platform, outcome = Platform(result["platform"]), Outcome(result["outcome"])
            completed = datetime.fromisoformat(result["completed_at"].replace("Z", "+00:00"))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            continue
        if wanted.platforms and platform not in wanted.platforms:
            continue
        if wanted.outcomes and outcome not in wanted.outcomes:
            continue
        if wanted.admits_time(completed):
            failed[result["event_id"]].add(platform)
    replays: list[Replay] = []
    if not failed:
        return replays
    async for record in _read_topic(settings, settings.input_topic):
        try:
            event = decode_event(record.value)
        except InvalidEventError:
            continue
        platforms = failed.pop(event.event_id, None)
        if platforms is None:
            continue
        document = event.model_dump(mode="json")
        document["targets"] = {p.value: document["targets"][p.value] for p in sorted(platforms)}
        document["replay_of"] = event.event_id
        document["event_id"] = str(uuid.uuid4())
        names = ",".join(sorted(p.value for p in platforms))
        replays.append(
            Replay(
                event.order.order_number.encode(),
                orjson.dumps(document),
                f"event {event.event_id} (order {event.order.order_number} v{event.order.version})"
                f" -> {names} as {document['event_id']}",
                TraceContext.from_headers(record.headers or ()),
            )
        )
    for event_id in failed:
        replays.append(Replay(None, b"", f"event {event_id}: not found in {settings.input_topic}; skipped"))
    return replays


def _dlq_reason(value: str) -> DlqReason | None:
    try:
        return DlqReason(value)
    except ValueError:
        return None


async def plan_dlq_replays(settings: KafkaSettings, wanted: ReplayFilter) -> list[Replay]:
    replays: list[Replay] = []
    async for record in _read_topic(settings, settings.dlq_topic):
        headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}
        trace = TraceContext.from_headers(record.headers or ())
        reason = headers.get("error.reason", "")
        if wanted.reasons and _dlq_reason(reason) not in wanted.reasons:
            continue
        if not wanted.admits_time(_timestamp(record)) or record.value is None:
            continue
        origin = (
            f"{headers.get('source.topic')}[{headers.get('source.partition')}]@{headers.get('source.offset')}"
        )
        try:
            event = decode_event(record.value)
        except InvalidEventError as exc:
            replays.append(
                Replay(
                    record.key, record.value, f"{origin} ({reason}) as is; it is still invalid: {exc}", trace
                )
            )
            continue
        document = event.model_dump(mode="json")
        document["replay_of"] = event.event_id
        document["event_id"] = str(uuid.uuid4())
        replays.append(
            Replay(
                record.key, orjson.dumps(document), f"{origin} ({reason}) as {document['event_id']}", trace
            )
        )
    return replays


async def replay(settings: KafkaSettings, source: ReplaySource, wanted: ReplayFilter, publish: bool) -> int:
    async with kafka_errors(settings):
        return await _replay(settings, source, wanted, publish)


async def _replay(settings: KafkaSettings, source: ReplaySource, wanted: ReplayFilter, publish: bool) -> int:
    if source is ReplaySource.FAILURES:
        planned = await plan_failure_replays(settings, wanted)
    else:
        planned = await plan_dlq_replays(settings, wanted)
    sendable = [r for r in planned if r.value]
    for item in planned:
        print(
            ("publish " if publish and item.value else "would publish " if item.value else "")
            + item.description
        )
    if not publish:
        print(
            f"dry run: {len(sendable)} events would be published to {settings.input_topic};"
            " add --yes to publish"
        )
        return 0
    if sendable:
        producer = AIOKafkaProducer(**producer_options(settings))
        try:
            await producer.start()
            futures = [
                await producer.send(
                    settings.input_topic,
                    value=r.value,
                    key=r.key,
                    headers=r.trace.kafka_headers() if r.trace is not None else None,
                )
                for r in sendable
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
    print(f"published {len(sendable)} events to {settings.input_topic}")
    return 0
