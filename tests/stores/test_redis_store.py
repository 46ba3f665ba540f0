"""Redis specifics: failures at the boundary, recovery after the link drops, retention by TTL."""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from connector.errors import StoreUnavailableError
from connector.models import Outcome, Platform
from connector.stores.base import DeliveryKey
from connector.stores.redis import RedisStore
from tests.stores.conftest import REDIS_PREFIX, delete_redis_keys
from tests.stores.proxy import TcpProxy, assert_recovers_after_link_cut, unused_port

PASSWORD = "s3cret-redis-pw"


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"{REDIS_PREFIX}:{uuid.uuid4().hex[:8]}"
    yield prefix
    client = aioredis.Redis.from_url(redis_url)
    try:
        await delete_redis_keys(client, f"{prefix}:")
    finally:
        await client.aclose()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    server = urlsplit(redis_url)
    forwarder = TcpProxy(server.hostname or "127.0.0.1", server.port or 6379)
    await forwarder.start()
    yield forwarder
    await forwarder.cut()


def a_delivery() -> DeliveryKey:
    return DeliveryKey(f"evt-{uuid.uuid4()}", Platform.SELLERCLOUD, f"ord-{uuid.uuid4().hex[:8]}", 1)


async def test_ping_without_a_server_is_unavailable_and_names_the_host_only() -> None:
    port = unused_port()
    store = RedisStore(f"redis://user:{PASSWORD}@127.0.0.1:{port}/0", timeout_s=1)
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            await store.ping()
    finally:
        await store.close()

    assert f"redis at 127.0.0.1:{port}/0" in str(caught.value)
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))


async def test_open_without_a_server_fails_clearly() -> None:
    port = unused_port()
    store = RedisStore(f"redis://:{PASSWORD}@127.0.0.1:{port}", timeout_s=1)
    try:
        with pytest.raises(StoreUnavailableError, match=rf"^redis at 127\.0\.0\.1:{port}: open failed"):
            await store.open()
    finally:
        await store.close()


async def test_store_answers_again_once_the_link_is_restored(proxy: TcpProxy, prefix: str) -> None:
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, timeout_s=1)
    await assert_recovers_after_link_cut(store, proxy, a_delivery())


async def test_a_server_that_does_not_answer_times_out(proxy: TcpProxy) -> None:
    proxy.black_hole = True
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailableError, match=r"open timed out after 0\.3s"):
            await store.open()
    finally:
        await store.close()
    assert time.monotonic() - started < 2


async def test_records_expire_by_ttl_and_applied_versions_do_not(redis_url: str, prefix: str) -> None:
    store = RedisStore(redis_url, prefix=prefix, retention_s=600)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await store.open()
        key = a_delivery()
        await store.claim(key, "a", 60)
        await store.record_outcome(key, Outcome.APPLIED, b"result")
        await store.mark_reported([key])
        await store.check_event(key.event_id, "fp")

        delivery_ttl = await client.pttl(f"{prefix}:delivery:{key.event_id}:{key.platform.value}")
        event_ttl = await client.pttl(f"{prefix}:event:{key.event_id}")
        version_ttl = await client.pttl(f"{prefix}:applied:{key.order_number}:{key.platform.value}")
        assert 590_000 < delivery_ttl <= 600_000
        assert 590_000 < event_ttl <= 600_000
        assert version_ttl == -1
        assert await store.purge(datetime.now(UTC), 100) == 0
    finally:
        await client.aclose()
        await store.close()
