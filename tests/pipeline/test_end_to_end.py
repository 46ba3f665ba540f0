"""Issue 2 acceptance: `order-sync run` as a subprocess against the real broker and local HTTP endpoints."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker
from tests.pipeline.conftest import PLATFORMS, pipeline_env, versions_by_order
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, produce, produce_events, wait_committed
from tests.support.process import ConnectorProcess
from tests.support.servers import RecordingServer

StartConnector = Callable[[dict[str, str]], ConnectorProcess]


async def test_every_change_is_applied_once_in_version_order(
    broker: EmbeddedBroker,
    topics: Topics,
    endpoint: RecordingServer,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    bootstrap = broker.bootstrap_servers
    events = [make_event(f"ord-{n}", version) for version in (1, 2, 3) for n in range(200)]
    connector = connectors(
        {
            **pipeline_env(topics, "e2e", endpoint, bootstrap, tmp_path / "store.db"),
        }
    )
    await connector.wait_ready()
    started = time.monotonic()
    await produce_events(bootstrap, topics.input, events)

    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.success)) >= 1200, 120, "1200 results", fail_on=topics.failure
        )
        elapsed = time.monotonic() - started
        await wait_committed(bootstrap, "e2e", topics.input, platforms=PLATFORMS)
        await reader.poll(0.5)
        results = [r.json() for r in reader.of(topics.success)]
        assert reader.of(topics.failure) == []
    assert len(results) == 1200
    assert Counter(r["outcome"] for r in results) == {"applied": 1200}
    assert len({r["result_id"] for r in results}) == 1200
    order = versions_by_order(endpoint.requests)
    assert len(order) == 400
    assert all(versions == [1, 2, 3] for versions in order.values()), "a platform saw versions out of order"
    print(f"\nend-to-end: 600 events x 2 platforms -> 1200 applied in {elapsed:.2f}s")


async def test_deliveries_run_concurrently(
    broker: EmbeddedBroker,
    topics: Topics,
    endpoint: RecordingServer,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    endpoint.delay_s = 0.05
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        {
            **pipeline_env(topics, "conc", endpoint, bootstrap, tmp_path / "store.db"),
        }
    )
    await connector.wait_ready()
    await produce_events(bootstrap, topics.input, [make_event(f"ord-{n}", 1) for n in range(500)])
    async with TopicReader(bootstrap, topics.success) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 1000, 120, "1000 results")
    answered = sorted(request.at for request in endpoint.requests)
    elapsed = answered[-1] - answered[0] + endpoint.delay_s
    serial = 1000 * endpoint.delay_s
    print(
        f"\nconcurrency: 1000 deliveries at 50 ms in {elapsed:.2f}s"
        f" (serial {serial:.0f}s, ratio {elapsed / serial:.3f})"
    )
    assert elapsed < serial / 10
    assert endpoint.max_in_progress > 10


async def test_dlq_receives_bad_messages_and_the_stream_goes_on(
    broker: EmbeddedBroker,
    topics: Topics,
    endpoint: RecordingServer,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    bootstrap = broker.bootstrap_servers
    schema_invalid = b'{"event_id": "e-bad", "event_type": "order.changed"}'
    good = [make_event("ord-dlq", v) for v in (1, 2, 3)]
    from tests.support.events import encode

    await produce(
        bootstrap,
        topics.input,
        [
            (b"ord-dlq", encode(good[0])),
            (b"ord-dlq", b"{not json"),
            (b"ord-dlq", encode(good[1])),
            (b"ord-dlq", schema_invalid),
            (b"ord-dlq", b""),
            (b"ord-dlq", encode(good[2])),
        ],
    )
    connector = connectors(
        {
            **pipeline_env(topics, "dlq", endpoint, bootstrap, tmp_path / "store.db"),
        }
    )
    async with TopicReader(bootstrap, topics.success, topics.dlq) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.dlq)) >= 3 and len(r.of(topics.success)) >= 6, 60, "3 DLQ + 6 results"
        )
        dlq = sorted(reader.of(topics.dlq), key=lambda r: int(r.headers["source.offset"]))
    assert [r.value for r in dlq] == [b"{not json", schema_invalid, b""]
    assert [r.headers["error.reason"] for r in dlq] == ["decode", "schema", "decode"]
    for record in dlq:
        assert record.headers["source.topic"] == topics.input
        assert record.headers["source.partition"].isdigit()
        assert record.headers["error.message"]
    assert [int(r.headers["source.offset"]) for r in dlq] == [1, 3, 4]
    assert versions_by_order(endpoint.requests) == {
        ("vucustom", "ord-dlq"): [1, 2, 3],
        ("ventmere", "ord-dlq"): [1, 2, 3],
    }
    assert await connector.metric("order_sync_dlq_total") == 3
    await wait_committed(bootstrap, "dlq", topics.input, platforms=PLATFORMS)
