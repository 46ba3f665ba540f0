"""Hostile messages on the input topic: each one is a DLQ record (or a counted tombstone); the rest flows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.resilience.conftest import StartConnector, connector_env, produce_raw
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, wait_committed

OVERSIZE_BYTES = 1_100_000  # over the default ORDER_SYNC_KAFKA__MAX_MESSAGE_BYTES of 1 MiB


def _valid(n: int) -> dict[str, Any]:
    return make_event(f"host-{n}", 1)


def hostile_messages() -> list[tuple[str, bytes | None]]:
    """(expected DLQ reason, or "tombstone"; value), each with a different way of being wrong."""
    oversize = {**_valid(100), "padding": "x" * OVERSIZE_BYTES}
    nested: Any = "leaf"
    for _ in range(100):  # 200 levels: deeper than any event, within orjson's limit for writing it
        nested = {"n": [nested]}
    deep = _valid(101)
    deep["order"]["attributes"] = nested
    wrong_types = _valid(102)
    wrong_types["order"]["version"] = "seventeen"
    wrong_types["order"]["lines"] = {"line_id": 0}
    invalid_utf8 = orjson.dumps(_valid(103)).replace(b'"v1"', b'"v\xff\xfe1"')
    future = {**_valid(104), "schema_version": 2}
    duplicate = orjson.dumps(_valid(105)).replace(b'"version":1', b'"version":1,"version":2')
    return [
        ("decode", orjson.dumps(oversize)),
        ("decode", orjson.dumps(deep)),
        ("schema", orjson.dumps(wrong_types)),
        ("decode", invalid_utf8),
        ("tombstone", None),
        ("schema", orjson.dumps(future)),
        ("decode", duplicate),
        ("schema", b"[1, 2, 3]"),
        ("decode", b""),
    ]


async def test_hostile_messages_go_to_the_dlq_and_valid_events_are_applied(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    bootstrap = broker.bootstrap_servers
    hostile = hostile_messages()
    messages: list[tuple[bytes | None, bytes | None]] = []
    expected: list[tuple[str, bytes | None]] = []
    valid = 0
    for index, (reason, value) in enumerate(hostile):
        event = _valid(index)
        messages.append((b"host-key", orjson.dumps(event)))
        expected.append(("valid", None))
        messages.append((b"host-key", value))
        expected.append((reason, value))
        valid += 1
    messages.append((b"host-key", orjson.dumps(_valid(len(hostile)))))
    expected.append(("valid", None))
    valid += 1
    # One key, so one partition, in this order: valid and hostile strictly interleaved.
    sent = await produce_raw(bootstrap, topics.input, messages)
    assert len({m.partition for m in sent}) == 1
    assert max(len(value or b"") for _, value in messages) > OVERSIZE_BYTES, "the broker took the big one"

    connector = connectors(connector_env(suite, topics, bootstrap, tmp_path / "store.db", "hostile"))
    bad = [(reason, value, meta) for (reason, value), meta in zip(expected, sent, strict=True)]
    dead = [(reason, value, meta) for reason, value, meta in bad if reason not in ("valid", "tombstone")]
    async with TopicReader(bootstrap, topics.success, topics.failure, topics.dlq) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics.dlq)) >= len(dead) and len(r.of(topics.success)) >= 2 * valid,
            60,
            f"{len(dead)} DLQ records and {2 * valid} results",
            fail_on=topics.failure,
        )
        await wait_committed(bootstrap, "hostile", topics.input)
        await reader.poll(0.5)
        dlq = {int(r.headers["source.offset"]): r for r in reader.of(topics.dlq)}
        results = [r.json() for r in reader.of(topics.success)]
        assert reader.of(topics.failure) == []

    assert len(reader.of(topics.dlq)) == len(dead), "one DLQ record per bad message"
    for reason, value, meta in dead:
        record = dlq[meta.offset]
        assert record.headers["error.reason"] == reason, (reason, record.headers["error.message"])
        assert record.value == value, "the DLQ copy is not byte for byte"
        assert record.headers["source.topic"] == topics.input
        assert record.headers["source.partition"] == str(meta.partition)
        assert record.headers["error.message"]
    tombstone = next(meta for reason, _, meta in bad if reason == "tombstone")
    assert tombstone.offset not in dlq

    assert Counter(r["outcome"] for r in results) == {"applied": 2 * valid}
    assert {r["order_number"] for r in results} == {f"host-{n}" for n in range(valid)}
    connector.assert_running()
    assert await connector.metric("order_sync_tombstones_total") == 1
    by_reason = Counter(reason for reason, _, _ in dead)
    for reason, count in by_reason.items():
        assert await connector.metric("order_sync_dlq_total", {"reason": reason}) == count
    assert await connector.metric("order_sync_events_total", {"result": "valid"}) == valid
    largest = max(len(value or b"") for _, value, _ in dead)
    print(
        f"\nhostile input: {len(dead)} DLQ records {dict(by_reason)} (largest {largest} B"
        f" copied byte for byte), 1 tombstone skipped, {valid} valid events applied on 2 platforms,"
        " offsets committed to the end"
    )
