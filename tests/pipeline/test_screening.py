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


TP = ("orders.changed", 0)


def _screen(
    store: _Store, capacity: int = 16, readers: tuple[str, ...] = ("intake", "vucustom"), judged: int = 64
) -> MessageScreen:
    screen = MessageScreen(store.check, 1_048_576, capacity=capacity, judged_span=judged)
    for reader in readers:
        screen.assigned(reader, [TP])
    return screen


async def test_pipelines_reading_the_same_message_share_one_decode_and_one_check() -> None:
    store = _Store()
    screen = _screen(store)
    raw = orjson.dumps(make_event("ord-1", 1, event_id="e-1"))
    first = screen.screen(_record(0, raw), "intake")
    # Another pipeline reads the same offset later: the same decoded event, the same verdict.
    second = screen.screen(_record(0, raw), "vucustom")
    assert second is first and first.event is not None
    assert await first.first_seen_content() and await second.first_seen_content()
    assert store.calls == ["e-1"]
    # Every reader has read it: it is no longer kept (a re-read after a rebalance decodes again).
    assert screen.screen(_record(0, raw), "intake") is not first
    await screen.close()


async def test_an_invalid_message_carries_its_dlq_reason_and_no_check() -> None:
    store = _Store()
    screen = _screen(store)
    broken = screen.screen(_record(0, b'{"event_id": '), "intake")
    invalid = screen.screen(_record(1, orjson.dumps({"event_id": "e-2"})), "intake")
    assert broken.event is None and broken.error is not None and broken.error.reason is DlqReason.DECODE
    assert invalid.error is not None and invalid.error.reason is DlqReason.SCHEMA
    assert store.calls == []
    await screen.close()


async def test_copies_of_an_event_id_are_checked_in_consumption_order() -> None:
    # The first copy's check is slow; the second must still reach the store after it.
    store = _Store(delay_s=0.05)
    screen = _screen(store)
    original = make_event("ord-1", 1, event_id="e-1")
    reused = make_event("ord-1", 2, event_id="e-1")
    kept = screen.screen(_record(0, orjson.dumps(original)), "intake")
    refused = screen.screen(_record(1, orjson.dumps(reused)), "intake")
    assert await refused.first_seen_content() is False
    assert await kept.first_seen_content() is True


async def test_a_full_cache_keeps_what_the_slower_pipelines_still_need() -> None:
    """The intake races ahead through a backlog: beyond the capacity it decodes without keeping;
    the first platform pipeline to arrive decodes again (with what was judged of it: no second
    store check), then keeps it for the rest."""
    store = _Store()
    screen = _screen(store, capacity=2, readers=("intake", "vucustom", "ventmere"))
    raws = [orjson.dumps(make_event(f"ord-{n}", 1, event_id=f"e-{n}")) for n in range(3)]
    ahead = [screen.screen(_record(n, raw), "intake") for n, raw in enumerate(raws)]
    for screened in ahead:
        assert await screened.first_seen_content()
    for reader in ("vucustom", "ventmere"):
        first_two = [screen.screen(_record(n, raw), reader) for n, raw in enumerate(raws[:2])]
        assert first_two == ahead[:2], "kept for the pipelines behind"
    late = screen.screen(_record(2, raws[2]), "vucustom")
    assert late is not ahead[2] and await late.first_seen_content()
    assert screen.screen(_record(2, raws[2]), "ventmere") is late, "kept by the first to arrive"
    assert late.verdict().result() is True
    assert store.calls == ["e-0", "e-1", "e-2"], "judged once: no second store check"
    await screen.close()


async def test_beyond_what_is_remembered_a_message_is_judged_again_with_the_same_answer() -> None:
    store = _Store()
    screen = _screen(store, capacity=0, judged=1)
    raws = [orjson.dumps(make_event(f"ord-{n}", 1, event_id=f"e-{n}")) for n in range(2)]
    first = screen.screen(_record(0, raws[0]), "intake")
    second = screen.screen(_record(1, raws[1]), "intake")
    # A check under way is shared whatever the span; an answer is kept for `span` offsets only.
    assert screen.screen(_record(0, raws[0]), "ventmere").verdict() is first.verdict()
    assert await first.first_seen_content() and await second.first_seen_content()
    again = screen.screen(_record(0, raws[0]), "vucustom")
    assert again.verdict() is not first.verdict()
    assert await again.first_seen_content()
    assert store.calls == ["e-0", "e-1", "e-0"]
    # An invalid message remembered: judged invalid again without decoding, for the same reason.
    broken = screen.screen(_record(2, b"{"), "intake")
    assert screen.screen(_record(2, b"{"), "vucustom").error is broken.error
    await screen.close()


async def test_a_revoked_pipeline_is_no_longer_waited_for() -> None:
    store = _Store()
    screen = _screen(store, capacity=1)
    raw = orjson.dumps(make_event("ord-1", 1))
    kept = screen.screen(_record(0, raw), "intake")
    screen.revoked("vucustom", [TP])
    # Nobody else is to read offset 0: the cache has room again for the next message.
    follows = screen.screen(_record(1, orjson.dumps(make_event("ord-2", 1))), "intake")
    screen.assigned("vucustom", [TP])
    assert screen.screen(_record(0, raw), "vucustom") is not kept
    assert follows.event is not None
    await screen.close()


async def test_one_waiter_giving_up_does_not_cancel_the_check_for_the_others() -> None:
    store = _Store(delay_s=0.05)
    screen = _screen(store)
    screened = screen.screen(_record(0, orjson.dumps(make_event("ord-1", 1))), "intake")
    impatient = asyncio.ensure_future(screened.first_seen_content())
    await asyncio.sleep(0)
    impatient.cancel()
    assert await asyncio.wait_for(screened.first_seen_content(), 1) is True
    await screen.close()


async def test_a_pipeline_a_backlog_behind_finds_every_answer_without_the_store() -> None:
    store = _Store()
    screen = _screen(store, capacity=0, judged=10_000)
    raws = [orjson.dumps(make_event(f"ord-{n}", 1, event_id=f"e-{n}")) for n in range(3_000)]
    for offset, raw in enumerate(raws):
        await screen.screen(_record(offset, raw), "intake").first_seen_content()
    broken = screen.screen(_record(3_000, b"not json"), "intake")
    behind = [screen.screen(_record(offset, raw), "vucustom") for offset, raw in enumerate(raws)]
    assert all(s.event is not None and s.verdict().done() and s.verdict().result() for s in behind)
    assert screen.screen(_record(3_000, b"not json"), "vucustom").error is broken.error
    assert len(store.calls) == 3_000, "the pipeline behind asked the store again"
    await screen.close()


async def test_a_pipeline_far_ahead_leaves_the_cache_to_those_close_together() -> None:
    """The intake a backlog ahead keeps nothing for the platform pipelines far behind it, however
    fast it reads on: the cache has room for what the first of them decodes, kept for the other."""
    store = _Store()
    screen = _screen(store, capacity=4, readers=("intake", "vucustom", "ventmere"))
    raws = [orjson.dumps(make_event(f"ord-{n}", 1, event_id=f"e-{n}")) for n in range(40)]
    for reader in ("intake", "vucustom", "ventmere"):  # every pipeline's place is known
        screen.screen(_record(0, raws[0]), reader)
    ahead = 1
    for _ in range(10):  # the intake runs ahead by more than the capacity
        await screen.screen(_record(ahead, raws[ahead]), "intake").first_seen_content()
        ahead += 1
    for offset in range(1, 30):
        first = screen.screen(_record(offset, raws[offset]), "vucustom")
        assert screen.screen(_record(offset, raws[offset]), "ventmere") is first, "decoded twice"
        # The intake reads one more message for each the others read: it never falls back.
        await screen.screen(_record(ahead, raws[ahead]), "intake").first_seen_content()
        ahead += 1
    assert store.calls == [f"e-{n}" for n in range(ahead)], "judged once: no second store check"
    await screen.close()
