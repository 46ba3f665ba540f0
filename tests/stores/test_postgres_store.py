"""PostgreSQL specifics: failures at the boundary, recovery after the link drops, the schema option."""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from connector.errors import StoreUnavailableError
from connector.models import Platform
from connector.stores.base import DeliveryKey
from connector.stores.postgres import PostgresStore
from tests.stores.conftest import POSTGRES_SCHEMA, drop_postgres_schema
from tests.stores.proxy import TcpProxy, assert_recovers_after_link_cut, unused_port

PASSWORD = "s3cret-postgres-pw"


@pytest.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:
    name = f"{POSTGRES_SCHEMA}_{uuid.uuid4().hex[:8]}"
    yield name
    await drop_postgres_schema(postgres_url, name)


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    server = urlsplit(postgres_url)
    forwarder = TcpProxy(server.hostname or "127.0.0.1", server.port or 5432)
    await forwarder.start()
    yield forwarder
    await forwarder.cut()


def via(proxy: TcpProxy, url: str) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    address = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{user}@{address}" if user else address))


def a_delivery() -> DeliveryKey:
    return DeliveryKey(f"evt-{uuid.uuid4()}", Platform.ELASTICPATH, f"ord-{uuid.uuid4().hex[:8]}", 1)


async def test_open_without_a_server_names_the_host_and_never_the_password() -> None:
    port = unused_port()
    store = PostgresStore(f"postgresql://order_sync:{PASSWORD}@127.0.0.1:{port}/orders", timeout_s=1)

    with pytest.raises(StoreUnavailableError) as caught:
        await store.open()

    assert str(caught.value).startswith(f"postgresql at 127.0.0.1:{port}/orders: open failed")
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))


async def test_operations_before_open_are_unavailable() -> None:
    store = PostgresStore(f"postgresql://127.0.0.1:{unused_port()}/orders")

    with pytest.raises(StoreUnavailableError, match="not open"):
        await store.ping()


async def test_store_answers_again_once_the_link_is_restored(
    proxy: TcpProxy, postgres_url: str, schema: str
) -> None:
    store = PostgresStore(via(proxy, postgres_url), schema=schema, timeout_s=1)
    await assert_recovers_after_link_cut(store, proxy, a_delivery())


async def test_a_server_that_does_not_answer_times_out(proxy: TcpProxy, postgres_url: str) -> None:
    proxy.black_hole = True
    store = PostgresStore(via(proxy, postgres_url), timeout_s=0.3)
    started = time.monotonic()

    with pytest.raises(StoreUnavailableError, match=r"open timed out after 0\.3s"):
        await store.open()

    assert time.monotonic() - started < 2


async def test_tables_are_created_in_the_given_schema(postgres_url: str, schema: str) -> None:
    store = PostgresStore(postgres_url, schema=schema)
    try:
        await store.open()
        await store.close()
        await store.open()  # everything exists now: no DDL runs
    finally:
        await store.close()

    conn = await asyncpg.connect(postgres_url)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema)
    finally:
        await conn.close()
    assert [row["tablename"] for row in tables] == [
        "order_sync_applied_versions",
        "order_sync_deliveries",
        "order_sync_events",
        "order_sync_parked_deliveries",
    ]
