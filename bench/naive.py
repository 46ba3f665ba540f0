"""The naive peer: the loop a team writes by hand.

One aiokafka consumer; each message in turn; each platform's PUT in turn (built by the same
adapters as order-sync, sent through them with their auth); the offset committed after each
message. No idempotency store, no result events, no concurrency.

    python -m bench.naive --out FILE [--max-events N] [--max-seconds S]

Settings (bootstrap, topic, group, platform URLs and credentials) come from the same
ORDER_SYNC_ environment as `order-sync run`. Writes a JSON summary to FILE on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from connector.codec import decode_event
from connector.commands import eventloop
from connector.config import load_settings
from connector.errors import InvalidEventError, UnmappableError
from connector.observability.redaction import Redactor
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport


async def naive_loop(out: Path, max_events: int, max_seconds: float) -> None:
    settings = load_settings()
    transport = Transport()
    adapters = {
        platform: build_adapter(platform, settings.platforms.get(platform), transport, Redactor())
        for platform in settings.platforms.enabled()
    }
    consumer = AIOKafkaConsumer(
        settings.kafka.input_topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=settings.kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    statuses: Counter[str] = Counter()
    events = deliveries = 0
    first = last = 0.0
    await consumer.start()
    try:
        while not stop.is_set() and events < max_events:
            if first and time.time() - first >= max_seconds:
                break
            try:
                message = await asyncio.wait_for(consumer.getone(), timeout=1.0)
            except TimeoutError:
                continue
            if not first:
                first = time.time()
            try:
                event = decode_event(message.value)
            except InvalidEventError:
                statuses["invalid"] += 1
            else:
                for platform in event.targets.platforms():
                    adapter = adapters.get(platform)
                    if adapter is None:
                        continue
                    try:
                        request = adapter.build_request(event)
                    except UnmappableError:
                        statuses["unmappable"] += 1
                        continue
                    attempt = await adapter.attempt(request)
                    statuses[str(attempt.status_code)] += 1
                    deliveries += 1
            await consumer.commit()
            events += 1
            last = time.time()
    finally:
        await consumer.stop()
        await transport.close()
        summary = {
            "events": events,
            "deliveries": deliveries,
            "first_at": first,
            "last_at": last,
            "statuses": dict(statuses),
        }
        _write(out, summary)


def _write(out: Path, summary: dict[str, object]) -> None:
    out.write_bytes(orjson.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-events", type=int, default=10**9)
    parser.add_argument("--max-seconds", type=float, default=float("inf"))
    args = parser.parse_args()
    # The same event loop as `order-sync run` with the same settings: only the work differs.
    eventloop.run(naive_loop(args.out, args.max_events, args.max_seconds), load_settings().event_loop)


if __name__ == "__main__":
    main()
