"""Issue 17: `order-sync history ORDER_NUMBER` tells one order's story from a real connector run."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from connector.commands.history import parse_since
from connector.devtools.broker import EmbeddedBroker
from connector.kafka.partitioners import crc32, murmur2
from tests.support.events import encode, make_event
from tests.support.kafka import TopicReader, Topics, create_topics, produce, produce_with_headers
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]
ORDER_SYNC = str(Path(sys.executable).with_name("order-sync"))
ACCOUNT = "1ac48942-405a-4841-a7d8-708f50dbe1ad"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def history(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        ORDER_SYNC,
        "history",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def kafka_env(topics: Topics, bootstrap: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_SYNC_")}
    return {**base, **topics.env("history"), "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap}


class ScriptedPlatforms:
    """VU Custom refuses version 4 (422); Ventmere never answers version 5 (an outage); else 200."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        #: Set once the request that hangs arrived: its delivery was claimed before it was sent.
        self.hanging = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if request.path.startswith("/vu/") and body["order"]["note"] == "v4":
            return web.json_response({"error": "order is locked"}, status=422)
        if request.path.startswith("/vm/") and body["customerNote"] == "v5":
            self.hanging.set()
            await self.release.wait()
        return web.json_response({"ok": True})

    async def __aenter__(self) -> ScriptedPlatforms:
        app = web.Application()
        app.router.add_route("PUT", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.port}"
        return {
            "ORDER_SYNC_PLATFORMS__VUCUSTOM__BASE_URL": f"{url}/vu",
            "ORDER_SYNC_PLATFORMS__VUCUSTOM__API_KEY": "key",
            "ORDER_SYNC_PLATFORMS__VUCUSTOM__API_SECRET": "secret-value",
            "ORDER_SYNC_PLATFORMS__VENTMERE__BASE_URL": f"{url}/vm",
            "ORDER_SYNC_PLATFORMS__VENTMERE__API_TOKEN": "token-value",
            "ORDER_SYNC_PLATFORMS__VENTMERE__ORGANIZATION_ID": "org-1",
            "ORDER_SYNC_PLATFORMS__VENTMERE__TIMEOUT_S": "120",
            "ORDER_SYNC_PLATFORMS__SELLERCLOUD__ENABLED": "false",
            "ORDER_SYNC_PLATFORMS__ELASTICPATH__ENABLED": "false",
        }


@pytest.fixture
async def platforms() -> AsyncIterator[ScriptedPlatforms]:
    async with ScriptedPlatforms() as running:
        yield running


def outcomes(version: dict[str, Any]) -> dict[str, str]:
    return {d["platform"]: d["outcome"] for d in version["deliveries"]}


@pytest.mark.slow
async def test_history_shows_every_version_with_its_outcome_per_platform(
    broker: EmbeddedBroker,
    topics: Topics,
    platforms: ScriptedPlatforms,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    bootstrap = broker.bootstrap_servers
    store = tmp_path / "store.db"
    env = {
        **kafka_env(topics, bootstrap),
        **platforms.env(),
        "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{store}",
    }
    connector = connectors(env)
    await connector.wait_ready()

    order = f"ord-{uuid.uuid4().hex[:8]}"
    targets = {"vucustom": {"order_number": order}, "ventmere": {"order_id": order, "account_id": ACCOUNT}}
    v1, v3, v2, v4, v5 = (make_event(order, n, targets) for n in (1, 3, 2, 4, 5))
    reused = make_event(order, 6, targets, event_id=v1["event_id"])  # same event_id, other content
    invalid = {"event_id": "not-an-event", "order": {"order_number": order, "version": "six"}}
    other = make_event(f"other-{order}", 1)
    key = order.encode()
    traced = [("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode())]
    await produce_with_headers(
        bootstrap,
        topics.input,
        [
            (key, encode(v1), []),
            (key, encode(v3), []),
            (key, encode(v2), []),  # older than v3, after it: skipped_stale
            (key, encode(v4), traced),  # VU Custom answers 422: rejected
            (key, encode(reused), []),  # DLQ: conflict
            (key, orjson.dumps(invalid), []),  # DLQ: schema
            (key, encode(v5), []),  # Ventmere hangs: pending
            (other["order"]["order_number"].encode(), encode(other), []),
        ],
    )
    async with TopicReader(bootstrap, topics.success, topics.failure, topics.dlq) as reader:
        await reader.wait_for(
            lambda r: (
                len(r.of(topics.success)) + len(r.of(topics.failure)) >= 11 and len(r.of(topics.dlq)) >= 2
            ),
            60,
            "results of every delivery but the hanging one, and two DLQ copies",
        )
    # Its result is not awaited: its request is, which comes after its claim (the pending row).
    await asyncio.wait_for(platforms.hanging.wait(), 30)

    code, out, err = await history(env, order, "--json")
    assert code == 0, err
    story = orjson.loads(out)
    assert story["order_number"] == order
    by_id = {v["event_id"]: v for v in story["versions"] if v["dlq"] is None}
    assert outcomes(by_id[v1["event_id"]]) == {"vucustom": "applied", "ventmere": "applied"}
    assert outcomes(by_id[v3["event_id"]]) == {"vucustom": "applied", "ventmere": "applied"}
    assert outcomes(by_id[v2["event_id"]]) == {"vucustom": "skipped_stale", "ventmere": "skipped_stale"}
    assert outcomes(by_id[v4["event_id"]]) == {"vucustom": "rejected", "ventmere": "applied"}
    assert outcomes(by_id[v5["event_id"]]) == {"vucustom": "applied", "ventmere": "pending"}
    rejected = next(d for d in by_id[v4["event_id"]]["deliveries"] if d["platform"] == "vucustom")
    assert rejected["status_code"] == 422 and rejected["attempts"] == 1
    assert rejected["error"]["category"] == "client_error"
    # The input's trace, and the traceparent each delivery's request and result carried.
    assert by_id[v4["event_id"]]["trace_id"] == TRACE_ID and by_id[v1["event_id"]]["trace_id"] is None
    assert rejected["traceparent"].split("-")[1] == TRACE_ID
    v1_traces = {d["traceparent"].split("-")[1] for d in by_id[v1["event_id"]]["deliveries"]}
    assert len(v1_traces) == 2 and TRACE_ID not in v1_traces
    pending = next(d for d in by_id[v5["event_id"]]["deliveries"] if d["platform"] == "ventmere")
    assert pending["store"] == "claimed"
    assert [v["version"] for v in story["versions"] if v["dlq"] is None] == [1, 3, 2, 4, 5]
    dead = {v["dlq"]["reason"]: v for v in story["versions"] if v["dlq"] is not None}
    assert set(dead) == {"conflict", "schema"}
    assert dead["conflict"]["event_id"] == v1["event_id"] and dead["conflict"]["version"] == 6
    assert dead["schema"]["event_id"] == "not-an-event"
    # In input order, each with where it was read.
    offsets = [v["offset"] for v in story["versions"]]
    assert offsets == sorted(offsets) and len(offsets) == 7
    assert story["applied"]["vucustom"] == {"version": 5, "store": 5, "results": 5}
    assert story["applied"]["ventmere"] == {"version": 4, "store": 4, "results": 4}
    assert story["store"] == "read"
    assert len(story["input_partitions_read"]) == 1  # named by the results' source headers

    code, text, err = await history(env, order)
    assert code == 0, err
    print(text)
    for shown in ("applied", "skipped_stale", "rejected", "pending", "dlq: conflict", "dlq: schema"):
        assert shown in text, f"{shown!r} missing from:\n{text}"
    assert "vucustom v5 (store v5), ventmere v4 (store v4)" in text


@pytest.mark.slow
async def test_history_of_an_unknown_order_exits_1(broker: EmbeddedBroker, topics: Topics) -> None:
    env = kafka_env(topics, broker.bootstrap_servers)
    await produce(
        broker.bootstrap_servers, topics.input, [(b"ord-known", encode(make_event("ord-known", 1)))]
    )
    code, out, err = await history(env, "ord-unknown", "--json", "--no-store")
    assert code == 1
    assert orjson.loads(out)["versions"] == []
    assert err.strip().splitlines() == [
        f"order-sync history: order ord-unknown is unknown since {orjson.loads(out)['since']}"
    ]
    code, _, _ = await history(env, "ord-known", "--json", "--no-store")
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ord-1", "--since", "yesterday"], "--since"),
        (["ord-1", "--since", "5 days"], "--since"),
    ],
)
@pytest.mark.slow
async def test_a_wrong_since_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, _, err = await history(dict(os.environ), *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.slow
async def test_an_unreachable_kafka_is_one_line_and_exit_2() -> None:
    from connector.devtools.broker import free_port

    env = {**dict(os.environ), "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    code, _, err = await history(env, "ord-1", "--no-store")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Kafka" in lines[0], err


@pytest.mark.slow
async def test_a_missing_store_is_reported_not_created(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path
) -> None:
    store = tmp_path / "absent.db"
    env = {**kafka_env(topics, broker.bootstrap_servers), "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{store}"}
    await produce(broker.bootstrap_servers, topics.input, [(b"ord-1", encode(make_event("ord-1", 1)))])
    code, out, _ = await history(env, "ord-1", "--json")
    assert code == 0
    assert orjson.loads(out)["store"].startswith("not read")
    assert not store.exists()


async def produce_with_kcat(bootstrap: str, topic: str, lines: bytes) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat (librdkafka's command-line client, Debian package kcat) is not installed")
    process = await asyncio.create_subprocess_exec(
        kcat,
        "-P",
        "-b",
        bootstrap,
        "-t",
        topic,
        "-K",
        "\t",
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(lines), 60)
    if process.returncode != 0 and b"ApiVersionRequest failed" in err:
        # Debian 12's kcat (librdkafka 2.0.2) cannot parse the embedded broker's ApiVersions v3 answer.
        reason = next(line for line in err.decode().splitlines() if "ApiVersionRequest failed" in line)
        pytest.skip(f"this kcat cannot talk to the embedded broker: {reason}")
    assert process.returncode == 0, err.decode()


async def produce_with_confluent_kafka(bootstrap: str, topic: str, lines: bytes) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka", reason="confluent-kafka (librdkafka) is missing")

    def send() -> int:
        producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False})
        for line in lines.splitlines():
            key, _, value = line.partition(b"\t")
            producer.produce(topic, key=key, value=value)
        return int(producer.flush(30))

    assert await asyncio.to_thread(send) == 0, "librdkafka left messages unsent"


@pytest.mark.parametrize(
    "producer", [produce_with_kcat, produce_with_confluent_kafka], ids=["kcat", "confluent-kafka"]
)
@pytest.mark.slow
async def test_history_finds_orders_produced_by_librdkafka(
    broker: EmbeddedBroker, producer: Callable[[str, str, bytes], Any]
) -> None:
    topics = await create_topics(broker.bootstrap_servers, partitions=8)
    orders = [f"ord-rdkafka-{n}" for n in range(8)]
    lines = b"".join(o.encode() + b"\t" + encode(make_event(o, 1)) + b"\n" for o in orders)
    await producer(broker.bootstrap_servers, topics.input, lines)
    async with TopicReader(broker.bootstrap_servers, topics.input) as reader:
        await reader.wait_for(lambda r: len(r.records) >= len(orders), 30, "the librdkafka records")
    placed = {r.key.decode(): r.partition for r in reader.records if r.key is not None}
    # librdkafka's default partitioner (CRC-32) is not the connector's: some orders sit elsewhere
    # than murmur2 says.
    assert all(placed[o] == crc32(o.encode(), 8) for o in orders)
    assert any(placed[o] != murmur2(o.encode(), 8) for o in orders)

    env = kafka_env(topics, broker.bootstrap_servers)
    for order in orders:
        code, out, err = await history(env, order, "--json", "--no-store")
        assert code == 0, err
        story = orjson.loads(out)
        (version,) = story["versions"]
        assert version["partition"] == placed[order] and version["version"] == 1
        # Found among the known partitioners' candidates, without reading every partition.
        assert len(story["input_partitions_read"]) < 8
        assert {d["outcome"] for d in version["deliveries"]} == {"pending"}


@pytest.mark.slow
async def test_time_to_answer_on_an_input_topic_of_100000_messages(broker: EmbeddedBroker) -> None:
    """Measured and printed, not asserted (issue 17 asks for under 5 s)."""
    bootstrap = broker.bootstrap_servers
    topics = await create_topics(bootstrap, partitions=8)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=20, max_batch_size=512 * 1024
    )
    template = encode(make_event("ord-bulk-00000", 1))
    await producer.start()
    try:
        started = time.monotonic()
        futures = []
        for n in range(100_000):
            order = f"ord-bulk-{n % 20_000:05d}"
            value = template.replace(b"ord-bulk-00000", order.encode())
            futures.append(await producer.send(topics.input, value=value, key=order.encode()))
        await asyncio.gather(*futures)
        produced = time.monotonic() - started
    finally:
        await producer.stop()

    env = kafka_env(topics, bootstrap)
    started = time.monotonic()
    code, out, err = await history(env, "ord-bulk-12345", "--json", "--no-store")
    elapsed = time.monotonic() - started
    assert code == 0, err
    story = orjson.loads(out)
    assert len(story["versions"]) == 5  # five messages per order in the topic
    print(
        f"\nhistory on 100,000 input messages (8 partitions, {len(story['input_partitions_read'])} read):"
        f" {elapsed:.2f}s including process start (produced in {produced:.1f}s)"
    )


@pytest.mark.slow
async def test_history_links_results_without_source_headers_by_event_id(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    """Results of an older connector carry no `source.*` headers; a second copy of a delivered event
    gets no result of its own; a version no platform has taken yet waits."""
    bootstrap = broker.bootstrap_servers
    order = f"ord-{uuid.uuid4().hex[:8]}"
    first, second = make_event(order, 1), make_event(order, 2)
    key = order.encode()
    await produce(
        bootstrap, topics.input, [(key, encode(first)), (key, encode(first)), (key, encode(second))]
    )
    async with TopicReader(bootstrap, topics.input) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 3, 20, "the input records")
    source = reader.records[0]

    def result(event: dict[str, Any], outcome: str, code: int) -> bytes:
        return orjson.dumps(
            {
                "result_id": f"{event['event_id']}:vucustom",
                "event_id": event["event_id"],
                "order_number": order,
                "order_version": event["order"]["version"],
                "platform": "vucustom",
                "outcome": outcome,
                "status_code": code,
                "attempts": 1,
                "duration_ms": 5.0,
                "error": None if code < 300 else {"category": "client_error", "message": "no"},
                "completed_at": "2024-01-02T07:26:41.402Z",
            }
        )

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        headers = [
            ("event_id", first["event_id"].encode()),
            ("source.topic", topics.input.encode()),
            ("source.partition", str(source.partition).encode()),
            ("source.offset", str(source.offset).encode()),
        ]
        await producer.send_and_wait(topics.success, result(first, "applied", 200), key=key, headers=headers)
        await producer.send_and_wait(
            topics.failure,
            result(second, "rejected", 409),
            key=key,
            headers=[("event_id", second["event_id"].encode())],
        )
    finally:
        await producer.stop()

    env = kafka_env(topics, bootstrap)
    code, out, err = await history(env, order, "--json", "--no-store", "--since", "10m")
    assert code == 0, err
    story = orjson.loads(out)
    assert [(v["event_id"], v["offset"]) for v in story["versions"]] == [
        (first["event_id"], source.offset),
        (first["event_id"], source.offset + 1),
        (second["event_id"], source.offset + 2),
    ]
    assert [outcomes(v) for v in story["versions"]] == [
        {"vucustom": "applied", "ventmere": "pending"},
        {"vucustom": "duplicate", "ventmere": "pending"},
        {"vucustom": "rejected", "ventmere": "pending"},
    ]
    assert story["applied"] == {"vucustom": {"version": 1, "store": None, "results": 1}}
    assert story["store"] == "not read (--no-store)"

    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    code, out, _ = await history(env, order, "--json", "--no-store", "--since", future)
    assert code == 1 and orjson.loads(out)["versions"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
        ("2h", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("3d", datetime(2024, 4, 28, 12, 0, tzinfo=UTC)),
        ("1w", datetime(2024, 4, 24, 12, 0, tzinfo=UTC)),
        ("2024-05-01T08:00:00Z", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        ("2024-05-01T10:00:00+02:00", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        ("2024-05-01T08:00:00", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
    ],
)
def test_since_takes_rfc3339_times_and_spans_back_from_now(text: str, expected: datetime) -> None:
    assert parse_since(text, datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h30m", "-2h", "3 d", ""])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_since(text, datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
