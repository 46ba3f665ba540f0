"""The pipeline floor: the Kafka work the guarantees require and the PUTs, with no connector logic.

What any implementation of the guarantees (README "Guarantees and how they are kept") must do per
event, and nothing else: five consumer groups read the input (the intake's and one per platform),
each platform's group sends its PUT and produces a result record, and every group commits once the
results are acknowledged. Each platform's records go to `MAX_CONCURRENCY` workers that take them in
turn, the shape of `bench.limit`. Left out, so that this is a floor and not a rival: the idempotency
store, the decode and validation of the event, request mapping (the requests are built up front, as
`bench.limit` does), per-order ordering, retries, metrics and logs.

    python -m bench.floor --events N --seed S --ready FILE

Settings (topics, group, bootstrap, platforms, MAX_CONCURRENCY, MAX_INFLIGHT_EVENTS) come from the
ORDER_SYNC_ environment, as for `order-sync run`; FILE is created once every group has partitions.
Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from yarl import URL

from bench.limit import built_requests
from connector.commands import eventloop
from connector.config import KafkaSettings, Settings, load_settings
from connector.kafka.client import consumer_options, producer_options
from connector.models import Platform

#: A request ready to send: method, URL, headers (auth included), body.
Prepared = tuple[str, URL, list[tuple[str, str]], bytes | None]


class _Joined(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, joined: asyncio.Event) -> None:
        self._joined = joined

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        if assigned:
            self._joined.set()


async def _requests(settings: Settings, events: int, seed: int) -> dict[Platform, dict[str, Prepared]]:
    """Every event's request per platform, as the limit builds them, its URL parsed up front."""
    return {
        platform: {
            event_id: (request.method, URL(request.url, encoded=True), headers, request.body)
            for event_id, (request, headers) in requests.items()
        }
        for platform, requests in (await built_requests(settings, events, seed)).items()
    }


@dataclass(slots=True)
class _Batch:
    """A fetched batch of one partition: committed once every record's result is acknowledged."""

    tp: TopicPartition
    end: int
    left: int
    acks: list[asyncio.Future[object]] = field(default_factory=list)


class _Group:
    """One consumer group. The intake's only reads. A platform's hands each fetched record to one of
    `concurrency` workers, as the limit's workers take prebuilt requests (the leanest shape: no task
    per record), and commits a batch once all its results are acknowledged."""

    def __init__(
        self, kafka: KafkaSettings, group_id: str, inflight: int, work: _Work | None, concurrency: int
    ) -> None:
        self.consumer = AIOKafkaConsumer(**{**consumer_options(kafka), "group_id": group_id})
        self.joined = asyncio.Event()
        self.consumer.subscribe([kafka.input_topic], listener=_Joined(self.joined))
        self._inflight = inflight
        self._max_poll = kafka.max_poll_records
        self._work = work
        self._concurrency = concurrency
        self._queue: deque[tuple[ConsumerRecord, _Batch]] = deque()
        self._fed = asyncio.Event()
        self._room = asyncio.Event()
        self._in_flight = 0
        self._done: dict[TopicPartition, int] = {}
        self._settling: set[asyncio.Future[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        workers = [
            asyncio.ensure_future(self._worker()) for _ in range(self._concurrency if self._work else 0)
        ]
        try:
            while not stop.is_set():
                free = self._inflight - self._in_flight
                if free <= 0:
                    self._room.clear()
                    await self._room.wait()
                    continue
                batches = await self.consumer.getmany(timeout_ms=200, max_records=min(free, self._max_poll))
                for tp, records in batches.items():
                    if self._work is None:  # the intake: read, nothing to deliver
                        self._done[tp] = records[-1].offset + 1
                        continue
                    batch = _Batch(tp, records[-1].offset + 1, len(records))
                    self._in_flight += len(records)
                    self._queue.extend((record, batch) for record in records)
                if self._queue:
                    self._fed.set()
                await self.commit()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        assert self._work is not None
        while True:
            if not self._queue:
                self._fed.clear()
                await self._fed.wait()
                continue
            record, batch = self._queue.popleft()
            batch.acks.append(await self._work(record))
            batch.left -= 1
            if not batch.left:
                settling = asyncio.ensure_future(self._settle(batch))
                self._settling.add(settling)
                settling.add_done_callback(self._settling.discard)

    async def _settle(self, batch: _Batch) -> None:
        await asyncio.gather(*batch.acks)
        # Batches of one partition may finish out of order; the floor commits the furthest.
        self._done[batch.tp] = max(batch.end, self._done.get(batch.tp, 0))
        self._in_flight -= len(batch.acks)
        self._room.set()

    async def commit(self) -> None:
        if self._done:
            offsets = {tp: OffsetAndMetadata(o, "") for tp, o in self._done.items()}
            self._done = {}
            await self.consumer.commit(offsets)


class _Work:
    """A platform's work for one record: its PUT, then its result handed to the producer. Returns the
    result's acknowledgement, which the record's batch waits for before it counts as done (at
    least once: an offset is committed only once its result is acknowledged)."""

    def __init__(
        self,
        platform: Platform,
        requests: dict[str, Prepared],
        session: aiohttp.ClientSession,
        producer: AIOKafkaProducer,
        topic: str,
    ) -> None:
        self._platform = platform
        self._requests = requests
        self._session = session
        self._producer = producer
        self._topic = topic

    async def __call__(self, record: ConsumerRecord) -> asyncio.Future[object]:
        assert record.value is not None
        event_id = orjson.loads(record.value)["event_id"]
        method, url, headers, body = self._requests[event_id]
        async with self._session.request(method, url, headers=headers, data=body) as response:
            await response.read()
            status = response.status
        value = orjson.dumps(
            {
                "result_id": f"{event_id}:{self._platform.value}",
                "event_id": event_id,
                "platform": self._platform.value,
                "outcome": "applied" if status < 300 else "failed",
                "status_code": status,
                "attempts": 1,
                "error": None,
            }
        )
        ack: asyncio.Future[object] = await self._producer.send(self._topic, value, key=record.key)
        return ack


async def floor(events: int, seed: int, ready: Path) -> None:
    settings = load_settings()
    kafka = settings.kafka
    requests = await _requests(settings, events, seed)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    producer = AIOKafkaProducer(**producer_options(kafka))
    inflight = settings.max_inflight_events
    groups = [_Group(kafka, kafka.group_id, inflight, None, 0)]
    for platform in settings.platforms.enabled():
        concurrency = settings.platforms.get(platform).max_concurrency
        work = _Work(platform, requests[platform], session, producer, kafka.success_topic)
        groups.append(_Group(kafka, f"{kafka.group_id}.{platform.value}", inflight, work, concurrency))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await producer.start()
    # Together, as `order-sync run` starts its pipelines: a broker may hold each new group's first join.
    await asyncio.gather(*(group.consumer.start() for group in groups))
    runs = [asyncio.ensure_future(group.run(stop)) for group in groups]
    try:
        await asyncio.gather(*(group.joined.wait() for group in groups))
        await asyncio.to_thread(ready.touch)
        await stop.wait()
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for group in groups:
            await group.consumer.stop()
        await producer.stop()
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    # The same event loop as `order-sync run` with the same settings: only the work differs.
    eventloop.run(floor(args.events, args.seed, args.ready), load_settings().event_loop)


if __name__ == "__main__":
    main()
