"""The publisher against the real broker: acknowledged sends, and a DLQ copy too large to land."""

from __future__ import annotations

from connector.codec import encode_result
from connector.config import KafkaSettings
from connector.devtools.broker import EmbeddedBroker
from connector.errors import DlqReason
from connector.kafka.publisher import Publisher
from connector.models import OrderSyncResult, Outcome, Platform, Source
from tests.support.kafka import TopicReader, Topics


async def test_a_dlq_copy_too_large_to_publish_is_kept_without_its_value(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, dlq_topic=topics.dlq, max_request_bytes=4096
    )
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.publish_dlq(b"x" * 10_000, b"k", DlqReason.DECODE, "too big", topics.input, 2, 41)
        await publisher.publish_dlq(b"small", b"k", DlqReason.SCHEMA, "bad", topics.input, 2, 42)
    finally:
        await publisher.stop()
    async with TopicReader(broker.bootstrap_servers, topics.dlq) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 2, 20, "two DLQ records")
    dropped, small = sorted(reader.records, key=lambda r: int(r.headers["source.offset"]))
    assert dropped.value is None
    assert dropped.headers["error.value_dropped"] == "10000"
    assert dropped.headers["error.reason"] == "decode" and dropped.headers["source.offset"] == "41"
    assert small.value == b"small" and "error.value_dropped" not in small.headers


async def test_a_result_carries_the_source_of_its_input_record(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        success_topic=topics.success,
        failure_topic=topics.failure,
    )
    result = OrderSyncResult(
        result_id="e-1:ventmere",
        event_id="e-1",
        order_number="ord-1",
        order_version=3,
        platform=Platform.VENTMERE,
        outcome=Outcome.APPLIED,
        status_code=200,
        attempts=1,
        duration_ms=1.0,
        error=None,
        completed_at="2024-01-02T07:26:41.402Z",
    )
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.publish_result(result, encode_result(result), Source(topics.input, 3, 1234))
    finally:
        await publisher.stop()
    async with TopicReader(broker.bootstrap_servers, topics.success) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 1, 20, "the result")
    (record,) = reader.records
    assert record.key == b"ord-1"
    assert record.headers == {
        "event_id": "e-1",
        "source.topic": topics.input,
        "source.partition": "3",
        "source.offset": "1234",
    }
