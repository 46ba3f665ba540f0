"""The pipeline floor: the Kafka work the guarantees require and the PUTs, with no connector logic.

What any implementation of the guarantees (README "Guarantees and how they are kept") must do per
event, and nothing else, in one of two designs (`--groups`):

- `five` (the connector's design, the default): five consumer groups read the input (the intake's
  and one per platform); each platform's group reads each event's `event_id`, sends its PUT and
  produces a result record, and every group commits once the results are acknowledged.
- `one` (the alternative of README "Isolation between connections"): a single group reads the
  input once and reads each event's `event_id` once, sends the four platforms' PUTs, produces the
  four result records, and commits once all four are acknowledged.

Each platform's deliveries go to `MAX_CONCURRENCY` workers that take them in turn, the shape of
`bench.limit`, in both designs. Left out, so that this is a floor and not a rival: the idempotency
store (and so parking), the validation of the event, request mapping (the requests are built up
front, as `bench.limit` does), per-order ordering, retries, metrics and logs.

    python -m bench.floor --events N --seed S --ready FILE [--groups five|one]

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
from aiokafka.structs import OffsetAndMetadata
from yarl import URL

from bench.limit import built_requests
from connector.commands import eventloop
from connector.config import KafkaSettings, Settings, load_settings
from connector.kafka.client import consumer_options, producer_options
from connector.models import Platform

#: A request ready to send: method, URL, headers (auth included), body.
Prepared = tuple[str, URL, list[tuple[str, str]], bytes | None]
#: The designs measured: five consumer groups (the intake's and one per platform), or one for all.
GROUPS = ("five", "one")


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
    """A fetched batch of one partition: committed once every delivery's result is acknowledged."""

    tp: TopicPartition
    end: int
    events: int
    left: int
    acks: list[asyncio.Future[object]] = field(default_factory=list)


class _Lane:
    """One platform's deliveries within a group: `concurrency` workers take them in turn, as the
    limit's workers take prebuilt requests (the leanest shape: no task per delivery)."""

    def __init__(self, work: _Work, concurrency: int) -> None:
        self.work = work
        self.concurrency = concurrency
        self.queue: deque[tuple[str, bytes | None, _Batch]] = deque()
        self.fed = asyncio.Event()


class _Group:
    """One consumer group. With no lanes (the intake of five groups) it only reads. Otherwise it reads
    each fetched record's `event_id` once, hands the record to each of its lanes (one in a platform's
    group of five, four in the single group), and commits a batch once all its results are
    acknowledged."""

    def __init__(self, kafka: KafkaSettings, group_id: str, inflight: int, lanes: list[_Lane]) -> None:
        self.consumer = AIOKafkaConsumer(**{**consumer_options(kafka), "group_id": group_id})
        self.joined = asyncio.Event()
        self.consumer.subscribe([kafka.input_topic], listener=_Joined(self.joined))
        self._inflight = inflight
        self._max_poll = kafka.max_poll_records
        self._lanes = lanes
        self._room = asyncio.Event()
        self._in_flight = 0
        self._done: dict[TopicPartition, int] = {}
        self._settling: set[asyncio.Future[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        workers = [
            asyncio.ensure_future(self._worker(lane)) for lane in self._lanes for _ in range(lane.concurrency)
        ]
        lanes = self._lanes
        try:
            while not stop.is_set():
                free = self._inflight - self._in_flight
                if free <= 0:
                    self._room.clear()
                    await self._room.wait()
                    continue
                batches = await self.consumer.getmany(timeout_ms=200, max_records=min(free, self._max_poll))
                for tp, records in batches.items():
                    if not lanes:  # the intake of five groups: read, nothing to deliver
                        self._done[tp] = records[-1].offset + 1
                        continue
                    batch = _Batch(tp, records[-1].offset + 1, len(records), len(records) * len(lanes))
                    self._in_flight += len(records)
                    for record in records:
                        assert record.value is not None
                        # The only decode: once per record and group, whatever its lanes.
                        event_id: str = orjson.loads(record.value)["event_id"]
                        for lane in lanes:
                            lane.queue.append((event_id, record.key, batch))
                for lane in lanes:
                    if lane.queue:
                        lane.fed.set()
                await self.commit()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, lane: _Lane) -> None:
        queue, fed, work = lane.queue, lane.fed, lane.work
        while True:
            if not queue:
                fed.clear()
                await fed.wait()
                continue
            event_id, key, batch = queue.popleft()
            batch.acks.append(await work(event_id, key))
            batch.left -= 1
            if not batch.left:
                settling = asyncio.ensure_future(self._settle(batch))
                self._settling.add(settling)
                settling.add_done_callback(self._settling.discard)

    async def _settle(self, batch: _Batch) -> None:
        await asyncio.gather(*batch.acks)
        # Batches of one partition may finish out of order; the floor commits the furthest.
        self._done[batch.tp] = max(batch.end, self._done.get(batch.tp, 0))
        self._in_flight -= batch.events
        self._room.set()

    async def commit(self) -> None:
        if self._done:
            offsets = {tp: OffsetAndMetadata(o, "") for tp, o in self._done.items()}
            self._done = {}
            await self.consumer.commit(offsets)


class _Work:
    """A platform's work for one delivery: its PUT, then its result handed to the producer. Returns
    the result's acknowledgement, which the record's batch waits for before it counts as done (at
    least once: an offset is committed only once its results are acknowledged)."""

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

    async def __call__(self, event_id: str, key: bytes | None) -> asyncio.Future[object]:
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
        ack: asyncio.Future[object] = await self._producer.send(self._topic, value, key=key)
        return ack


async def floor(events: int, seed: int, ready: Path, design: str = "five") -> None:
    settings = load_settings()
    kafka = settings.kafka
    requests = await _requests(settings, events, seed)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    producer = AIOKafkaProducer(**producer_options(kafka))
    inflight = settings.max_inflight_events
    lanes = {
        platform: _Lane(
            _Work(platform, requests[platform], session, producer, kafka.success_topic),
            settings.platforms.get(platform).max_concurrency,
        )
        for platform in settings.platforms.enabled()
    }
    if design == "one":
        groups = [_Group(kafka, kafka.group_id, inflight, list(lanes.values()))]
    else:
        groups = [_Group(kafka, kafka.group_id, inflight, [])]
        groups += [
            _Group(kafka, f"{kafka.group_id}.{platform.value}", inflight, [lane])
            for platform, lane in lanes.items()
        ]
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
    parser.add_argument(
        "--groups",
        choices=GROUPS,
        default="five",
        help="five consumer groups (the connector's design) or one",
    )
    args = parser.parse_args()
    # The same event loop as `order-sync run` with the same settings: only the work differs.
    eventloop.run(floor(args.events, args.seed, args.ready, args.groups), load_settings().event_loop)


if __name__ == "__main__":
    main()
