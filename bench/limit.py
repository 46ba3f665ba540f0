"""The physical limit: raw aiohttp PUTs against the simulators, same concurrency, no Kafka, no store.

Requests for the same events are built up front (by the same adapters) with their auth headers;
then per platform MAX_CONCURRENCY workers send them back to back over one pooled session.

    python -m bench.limit --events N --seed S --out FILE

Platform URLs, credentials and MAX_CONCURRENCY come from the ORDER_SYNC_ environment.
Writes a JSON summary to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
from yarl import URL

from bench.events import bench_events
from connector.codec import decode_event
from connector.commands import eventloop
from connector.config import Settings, load_settings
from connector.models import Platform
from connector.observability.redaction import Redactor
from connector.platforms.http import PlatformRequest
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport

#: A request with its headers, auth included, ready to send.
Built = tuple[PlatformRequest, list[tuple[str, str]]]


async def built_requests(settings: Settings, events: int, seed: int) -> dict[Platform, dict[str, Built]]:
    """Each bench event's request per enabled platform, by event id, built by the adapters with
    their auth headers (before any clock starts; each event decoded once)."""
    transport = Transport()
    try:
        adapters = {
            platform: build_adapter(platform, settings.platforms.get(platform), transport, Redactor())
            for platform in settings.platforms.enabled()
        }
        auth = {platform: await adapter.authenticator.headers() for platform, adapter in adapters.items()}
        built: dict[Platform, dict[str, Built]] = {platform: {} for platform in adapters}
        for event in bench_events(events, seed):
            decoded = decode_event(event.value)
            for platform, adapter in adapters.items():
                request = adapter.build_request(decoded)
                built[platform][decoded.event_id] = (request, [*request.headers, *auth[platform]])
    finally:
        await transport.close()
    return built


async def raw_puts(events: int, seed: int, out: Path) -> None:
    settings = load_settings()
    queues = {
        platform: list(requests.values())
        for platform, requests in (await built_requests(settings, events, seed)).items()
    }

    statuses: Counter[int] = Counter()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    async def worker(pending: list[Built]) -> None:
        while pending:
            request, headers = pending.pop()
            url = URL(request.url, encoded=True)
            async with session.request(request.method, url, headers=headers, data=request.body) as r:
                await r.read()
                statuses[r.status] += 1

    started, cpu_started = time.time(), time.process_time()
    await asyncio.gather(
        *(
            worker(queues[platform])
            for platform in queues
            for _ in range(settings.platforms.get(platform).max_concurrency)
        )
    )
    finished, cpu_finished = time.time(), time.process_time()
    await session.close()
    summary = {
        "requests": sum(statuses.values()),
        "events": events,
        "first_at": started,
        "last_at": finished,
        "cpu_s": cpu_finished - cpu_started,
        "statuses": {str(k): v for k, v in statuses.items()},
    }
    _write(out, summary)


def _write(out: Path, summary: dict[str, object]) -> None:
    out.write_bytes(orjson.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # The same event loop as `order-sync run` with the same settings: only the work differs.
    eventloop.run(raw_puts(args.events, args.seed, args.out), load_settings().event_loop)


if __name__ == "__main__":
    main()
