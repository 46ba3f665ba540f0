"""The Kafka floor for latency: consume an event, publish a result for it at once, nothing else.

Same client options as order-sync (connector.kafka.client), so the paced scenario can tell the broker's
and the clients' share of end-to-end latency from the connector's own.

    python -m bench.echo --ready FILE

Settings come from the ORDER_SYNC_ environment; FILE is created once the group is joined.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Collection
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from connector.commands import eventloop
from connector.config import load_settings
from connector.kafka.client import consumer_options, producer_options


class _Ready(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, path: Path) -> None:
        self._path = path

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._path.touch()


async def echo(ready: Path) -> None:
    kafka = load_settings().kafka
    consumer = AIOKafkaConsumer(**consumer_options(kafka))
    consumer.subscribe([kafka.input_topic], listener=_Ready(ready))
    producer = AIOKafkaProducer(**producer_options(kafka))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            sends = []
            for records in batches.values():
                for record in records:
                    event_id = orjson.loads(record.value)["event_id"]
                    value = orjson.dumps({"event_id": event_id, "outcome": "echo"})
                    sends.append(await producer.send(kafka.success_topic, value, key=record.key))
            await asyncio.gather(*sends)
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ready", type=Path, required=True)
    # The same event loop as `order-sync run` with the same settings: only the work differs.
    eventloop.run(echo(parser.parse_args().ready), load_settings().event_loop)


if __name__ == "__main__":
    main()
