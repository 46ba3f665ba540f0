"""Parked deliveries (README "Isolation between connections"), alike on every backend."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from connector.models import Platform
from connector.stores.base import DeliveryKey, IdempotencyStore, ParkedDelivery
from tests.stores.conftest import Backend
from tests.stores.test_store_contract import applied


def a_parked(
    offset: int,
    *,
    partition: int = 0,
    connection: str = "eu",
    platform: Platform = Platform.SELLERCLOUD,
    event_id: str | None = None,
) -> ParkedDelivery:
    return ParkedDelivery(
        event_id or f"evt-{uuid.uuid4()}",
        platform,
        connection,
        "orders.changed",
        partition,
        offset,
        f'{{"offset": {offset}}}'.encode(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" if offset % 2 else None,
    )


async def test_parked_deliveries_come_back_in_input_order_per_partition(store: IdempotencyStore) -> None:
    items = [a_parked(offset, partition=offset % 2) for offset in (9, 3, 7, 1, 4, 2)]
    await store.park(items)
    back = await store.parked(Platform.SELLERCLOUD, "eu", [0, 1], limit=10)
    assert [(p.partition, p.offset) for p in back] == [(0, 2), (0, 4), (1, 1), (1, 3), (1, 7), (1, 9)]
    assert {p.event_id: p for p in back} == {p.event_id: p for p in items}
    assert [p.offset for p in await store.parked(Platform.SELLERCLOUD, "eu", [1], limit=2)] == [1, 3]


async def test_parked_is_per_platform_connection_and_partition(store: IdempotencyStore) -> None:
    mine = a_parked(1)
    await store.park(
        [
            mine,
            a_parked(2, connection="us"),
            a_parked(3, platform=Platform.ELASTICPATH),
            a_parked(4, partition=5),
        ]
    )
    assert await store.parked(Platform.SELLERCLOUD, "eu", [0], limit=10) == [mine]
    counts = await store.parked_counts(Platform.SELLERCLOUD, [0, 5, 6])
    assert counts == {("eu", 0): 1, ("us", 0): 1, ("eu", 5): 1}
    assert await store.parked_counts(Platform.SELLERCLOUD, []) == {}


async def test_parking_twice_keeps_the_first_and_unpark_forgets(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    first = a_parked(1)
    again = ParkedDelivery(first.event_id, first.platform, "eu", first.topic, 0, 99, b"{}", None)
    await store.park([first])
    await peer.park([again])
    assert await peer.parked(Platform.SELLERCLOUD, "eu", [0], limit=10) == [first]
    await peer.unpark([first, a_parked(2)])
    assert await store.parked(Platform.SELLERCLOUD, "eu", [0], limit=10) == []
    assert await store.parked_counts(Platform.SELLERCLOUD, [0]) == {}


async def test_parked_deliveries_live_beside_the_delivery_records(store: IdempotencyStore) -> None:
    parked = a_parked(1)
    await store.park([parked])
    key = DeliveryKey(parked.event_id, parked.platform, "ord-1", 1, "eu")
    await applied(store, "ord-1", 1, Platform.SELLERCLOUD)
    assert (await store.claim(key, "a", 60)).status.value == "proceed"  # the stale guard is per connection
    assert await store.parked(Platform.SELLERCLOUD, "eu", [0], limit=1) == [parked]


async def test_parking_one_delivery_twice_in_a_batch_keeps_the_first(store: IdempotencyStore) -> None:
    first = a_parked(5)
    again = ParkedDelivery(first.event_id, first.platform, "eu", first.topic, 0, 1, b"{}", None)

    await store.park([first, again])

    assert await store.parked(Platform.SELLERCLOUD, "eu", [0], limit=10) == [first]
    assert await store.parked_counts(Platform.SELLERCLOUD, [0]) == {("eu", 0): 1}


async def test_parked_values_and_large_offsets_round_trip_exactly(store: IdempotencyStore) -> None:
    binary = bytes(range(256)) + b"\x00\r\n\xff"
    late = ParkedDelivery(f"evt-{uuid.uuid4()}", Platform.SELLERCLOUD, "eu", "t", 0, 2**40 + 1, binary)
    early = ParkedDelivery(f"evt-{uuid.uuid4()}", Platform.SELLERCLOUD, "eu", "t", 0, 2**31 + 7, b"")
    await store.park([late, early])

    assert await store.parked(Platform.SELLERCLOUD, "eu", [0], limit=10) == [early, late]


async def test_parked_pages_through_a_large_backlog_in_order(store: IdempotencyStore) -> None:
    items = [a_parked(offset, partition=offset % 3) for offset in range(300)]
    await store.park(items)

    page = await store.parked(Platform.SELLERCLOUD, "eu", [2, 0], limit=150)

    assert [(p.partition, p.offset) for p in page] == [(0, o) for o in range(0, 300, 3)] + [
        (2, o) for o in range(2, 150, 3)
    ]
    await store.unpark(page)
    assert await store.parked_counts(Platform.SELLERCLOUD, [0, 1, 2]) == {("eu", 1): 100, ("eu", 2): 50}
    assert await store.parked(Platform.SELLERCLOUD, "eu", [0, 1, 2], limit=0) == []
    assert await store.parked(Platform.SELLERCLOUD, "eu", [], limit=10) == []


async def test_purge_keeps_parked_deliveries(store: IdempotencyStore) -> None:
    parked = a_parked(1)
    await store.park([parked])

    await store.purge(datetime.now(UTC) + timedelta(days=1), 100)

    assert await store.parked(Platform.SELLERCLOUD, "eu", [0], limit=10) == [parked]


async def test_parked_deliveries_outlast_the_retention(backend: Backend) -> None:
    store = await backend.open_replica(retention_s=0.05)
    parked = a_parked(1)
    await store.park([parked])

    await asyncio.sleep(0.2)  # past the retention: keys with a TTL would be gone

    assert await store.parked(Platform.SELLERCLOUD, "eu", [0], limit=10) == [parked]
    assert await store.parked_counts(Platform.SELLERCLOUD, [0]) == {("eu", 0): 1}


async def test_parked_deliveries_outlive_the_store_object(backend: Backend, store: IdempotencyStore) -> None:
    if not backend.persistent:
        pytest.skip("memory:// keeps nothing across restarts, by design")
    parked = a_parked(1)
    await store.park([parked])
    await store.close()

    restarted = await backend.open_replica()

    assert await restarted.parked(Platform.SELLERCLOUD, "eu", [0], limit=10) == [parked]


async def test_order_records_list_the_asked_for_deliveries_parked_now(store: IdempotencyStore) -> None:
    event_id, other_id = f"evt-{uuid.uuid4()}", f"evt-{uuid.uuid4()}"
    sellercloud = a_parked(1, event_id=event_id)
    elasticpath = a_parked(2, event_id=event_id, platform=Platform.ELASTICPATH, connection="default")
    await store.park([sellercloud, elasticpath, a_parked(3, event_id=other_id)])

    records = await store.order_records("ord-1", [event_id])

    assert records.parked == {(event_id, Platform.SELLERCLOUD), (event_id, Platform.ELASTICPATH)}
    assert records.deliveries == {}  # parked is not claimed
    await store.unpark([sellercloud])
    assert (await store.order_records("ord-1", [event_id])).parked == {(event_id, Platform.ELASTICPATH)}
    assert (await store.order_records("ord-1", [])).parked == frozenset()
