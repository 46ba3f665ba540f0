"""`order-sync produce`: publish canonical events from JSON or JSONL to the input topic."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from connector.codec import decode_event
from connector.config import KafkaSettings
from connector.errors import InvalidEventError
from connector.kafka.client import kafka_errors, producer_options


def parse_documents(data: bytes) -> list[bytes]:
    """One event per item: a JSON object, a JSON array of objects, or JSON Lines."""
    text = data.strip()
    if not text:
        return []
    try:
        document: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [line for line in (raw.strip() for raw in text.splitlines()) if line]
    if isinstance(document, list):
        return [orjson.dumps(item) for item in document]
    return [text]


def produce_file(data: bytes, settings: KafkaSettings) -> int:
    """Validate every event first; publish only when all are valid. Exit code: 0, or 1 on invalid input."""
    raws = parse_documents(data)
    keyed: list[tuple[bytes, bytes]] = []
    failed = False
    for number, raw in enumerate(raws, start=1):
        try:
            event = decode_event(raw)
        except InvalidEventError as exc:
            print(f"event {number}: invalid ({exc.reason.value}): {exc}", file=sys.stderr)
            failed = True
            continue
        keyed.append((event.order.order_number.encode("utf-8"), raw))
    if failed:
        print("nothing published: fix the invalid events first", file=sys.stderr)
        return 1
    asyncio.run(_publish(settings, keyed))
    print(f"published {len(keyed)} events to {settings.input_topic}")
    return 0


async def _publish(settings: KafkaSettings, messages: list[tuple[bytes, bytes]]) -> None:
    async with kafka_errors(settings):
        producer = AIOKafkaProducer(**producer_options(settings))
        try:
            await producer.start()
            futures = [
                await producer.send(settings.input_topic, value=value, key=key) for key, value in messages
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
