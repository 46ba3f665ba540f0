"""What one more consumer group costs per event: a group reading the input (and each `event_id`).

The difference between the two designs of `bench.floor` (five groups or one) is four more groups
reading every event, three of them decoding it once more. This measures one such group alone, on
the embedded broker: a consumer with the connector's options (`consumer_options`) reads N bench
events and commits each fetch; then a fresh group does the same and also reads each `event_id`
with orjson, as the floor does. CPU per event is this process's, from its first fetched batch to
its last.

    python -m bench.groupread [--events 20000] [--runs 4]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata

from bench.events import bench_events
from bench.infra import Broker, Topics, produce_all
from connector.config import KafkaSettings
from connector.kafka.client import consumer_options


async def read_all(bootstrap: str, topic: str, group: str, total: int, decode: bool) -> float:
    """CPU µs per event of one group reading `total` events (and each `event_id` with `decode`)."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, input_topic=topic, group_id=group)
    consumer = AIOKafkaConsumer(**consumer_options(kafka))
    consumer.subscribe([topic])
    await consumer.start()
    read, started = 0, None
    try:
        while read < total:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            if batches and started is None:
                started = time.process_time()
            done = {}
            for tp, records in batches.items():
                for record in records:
                    if decode:
                        assert record.value is not None
                        orjson.loads(record.value)["event_id"]
                    read += 1
                done[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
            if done:
                await consumer.commit(done)
    finally:
        await consumer.stop()
    assert started is not None
    return (time.process_time() - started) / read * 1e6


async def main_async(events: int, runs: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="order-sync-groupread-"))
    broker = Broker(log_file=workdir / "tansu.log")
    await broker.start()
    try:
        topics = await Topics.create(broker.bootstrap_servers, "groupread")
        await produce_all(broker.bootstrap_servers, topics.input, bench_events(events, 7))
        for run in range(1, runs + 1):
            for decode in (False, True):
                group = f"{topics.group}.{run}.{'decode' if decode else 'read'}"
                us = await read_all(broker.bootstrap_servers, topics.input, group, events, decode)
                what = "fetch and event_id" if decode else "fetch only"
                print(f"run {run}, {what}: {us:.1f} µs of CPU per event", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main_async(args.events, args.runs))


if __name__ == "__main__":
    main()
