"""MessageScreen: each message decoded once per process, its event_id checked once, in order."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka.structs import ConsumerRecord

from connector.errors import DlqReason
from connector.pipeline.screening import MessageScreen
from tests.support.events import make_event


def _record(offset: int, value: bytes | None, partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic="orders.changed",
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value or b""),
        headers=(),
    )


class _Store:
    """The store's `check_event`: the first fingerprint seen for an id is kept."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.kept: dict[str, str] = {}
        self.calls: list[str] = []
        self._delay_s = delay_s

    async def check(self, event_id: str, fingerprint: str) -> bool:
        self.calls.append(event_id)
        await asyncio.sleep(self._delay_s)
        return self.kept.setdefault(event_id, fingerprint) == fingerprint


async def test_pipelines_reading_the_same_message_share_one_decode_and_one_check() -> None:
    store = _Store()
    screen = MessageScreen(store.check, 1_048_576, capacity=16)
    raw = orjson.dumps(make_event("ord-1", 1, event_id="e-1"))
    first = screen.screen(_record(0, raw))
    # Another pipeline reads the same offset later: the same decoded event, the same verdict.
    second = screen.screen(_record(0, raw))
    assert second is first and first.event is not None
    assert await first.first_seen_content() and await second.first_seen_content()
    assert store.calls == ["e-1"]
    await screen.close()


async def test_an_invalid_message_carries_its_dlq_reason_and_no_check() -> None:
    store = _Store()
    screen = MessageScreen(store.check, 1_048_576, capacity=16)
    broken = screen.screen(_record(0, b'{"event_id": '))
    invalid = screen.screen(_record(1, orjson.dumps({"event_id": "e-2"})))
    assert broken.event is None and broken.error is not None and broken.error.reason is DlqReason.DECODE
    assert invalid.error is not None and invalid.error.reason is DlqReason.SCHEMA
    assert store.calls == []
    await screen.close()


async def test_copies_of_an_event_id_are_checked_in_consumption_order() -> None:
    # The first copy's check is slow; the second must still reach the store after it.
    store = _Store(delay_s=0.05)
    screen = MessageScreen(store.check, 1_048_576, capacity=16)
    original = make_event("ord-1", 1, event_id="e-1")
    reused = make_event("ord-1", 2, event_id="e-1")
    kept = screen.screen(_record(0, orjson.dumps(original)))
    refused = screen.screen(_record(1, orjson.dumps(reused)))
    assert await refused.first_seen_content() is False
    assert await kept.first_seen_content() is True


async def test_a_message_evicted_from_the_cache_is_decoded_and_checked_again_with_the_same_answer() -> None:
    store = _Store()
    screen = MessageScreen(store.check, 1_048_576, capacity=2)
    raw = orjson.dumps(make_event("ord-1", 1, event_id="e-1"))
    first = screen.screen(_record(0, raw))
    assert await first.first_seen_content()
    for offset in (1, 2):
        screen.screen(_record(offset, orjson.dumps(make_event(f"ord-{offset}", 1))))
    again = screen.screen(_record(0, raw))
    assert again is not first
    assert await again.first_seen_content()
    assert store.calls.count("e-1") == 2
    await screen.close()


async def test_one_waiter_giving_up_does_not_cancel_the_check_for_the_others() -> None:
    store = _Store(delay_s=0.05)
    screen = MessageScreen(store.check, 1_048_576, capacity=16)
    screened = screen.screen(_record(0, orjson.dumps(make_event("ord-1", 1))))
    impatient = asyncio.ensure_future(screened.first_seen_content())
    await asyncio.sleep(0)
    impatient.cancel()
    assert await asyncio.wait_for(screened.first_seen_content(), 1) is True
    await screen.close()
