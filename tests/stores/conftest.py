"""Store fixtures over every backend, each test in its own namespace on the shared servers.

Redis keys live under `order-sync-test-<run>:<n>:` and PostgreSQL tables in schema `ost_<run>_<n>`;
both are removed after the test and, as a safety net, at the end of the session. The servers are
taken from ORDER_SYNC_TEST_REDIS_URL / ORDER_SYNC_TEST_POSTGRES_URL (defaults: local ones); a
backend whose server does not answer is skipped, not failed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from connector.stores.base import IdempotencyStore
from connector.stores.memory import MemoryStore
from connector.stores.postgres import PostgresStore
from connector.stores.redis import RedisStore
from connector.stores.sqlite import SqliteStore

REDIS_URL = os.environ.get("ORDER_SYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("ORDER_SYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

RUN_ID = uuid.uuid4().hex[:10]
REDIS_PREFIX = f"order-sync-test-{RUN_ID}"
POSTGRES_SCHEMA = f"ost_{RUN_ID}"
_namespaces = itertools.count()


_reachable: dict[str, str | None] = {}


async def _probe_redis() -> str | None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as exc:
        return f"no Redis at {REDIS_URL}: {exc}"
    finally:
        await client.aclose()
    return None


async def _probe_postgres() -> str | None:
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=2)
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        return f"no PostgreSQL at {POSTGRES_URL}: {exc}"
    await conn.close()
    return None


async def _require(server: str, probe: Callable[[], Awaitable[str | None]]) -> None:
    if server not in _reachable:
        _reachable[server] = await probe()
    problem = _reachable[server]
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture
async def redis_url() -> str:
    await _require("redis", _probe_redis)
    return REDIS_URL


@pytest.fixture
async def postgres_url() -> str:
    await _require("postgresql", _probe_postgres)
    return POSTGRES_URL


@pytest.fixture(scope="session", autouse=True)
async def _sweep_test_namespaces() -> AsyncIterator[None]:
    """Whatever a test left behind on the shared servers is removed when the session ends."""
    yield
    if _reachable.get("redis", "unused") is None:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await delete_redis_keys(client, f"{REDIS_PREFIX}:")
        finally:
            await client.aclose()
    if _reachable.get("postgresql", "unused") is None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            leftovers = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", f"{POSTGRES_SCHEMA}_"
            )
            for row in leftovers:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{row["nspname"]}" CASCADE')
        finally:
            await conn.close()


async def delete_redis_keys(client: aioredis.Redis, prefix: str) -> None:
    names = [name async for name in client.scan_iter(match=f"{prefix}*", count=1000)]
    if names:
        await client.delete(*names)


async def drop_postgres_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@dataclass
class Backend:
    """One backend under test: opens stores that share one namespace, like replicas sharing a server."""

    name: str
    opener: Callable[..., IdempotencyStore]
    cleanup: Callable[[], Awaitable[None]] | None = None
    #: Records expire by themselves after the retention (Redis TTLs); `purge` has nothing to do.
    expires_by_ttl: bool = False
    #: Records outlive the store object (not `memory://`).
    persistent: bool = True
    opened: list[IdempotencyStore] = field(default_factory=list)

    async def open_replica(self, **options: Any) -> IdempotencyStore:
        """A new opened store on this namespace. `retention_s` applies where records expire by TTL."""
        store = self.opener(**options)
        self.opened.append(store)
        await store.open()
        return store

    async def close_all(self) -> None:
        await asyncio.gather(*(store.close() for store in self.opened))
        if self.cleanup is not None:
            await self.cleanup()


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    namespace = next(_namespaces)
    if request.param == "memory":
        shared = MemoryStore()
        chosen = Backend("memory", lambda **_: shared, persistent=False)
    elif request.param == "sqlite":
        path = tmp_path / "store.db"
        chosen = Backend("sqlite", lambda **_: SqliteStore(path, timeout_s=5))
    elif request.param == "redis":
        await _require("redis", _probe_redis)
        url = REDIS_URL
        prefix = f"{REDIS_PREFIX}:{namespace}"

        async def forget_keys() -> None:
            client = aioredis.Redis.from_url(url)
            try:
                await delete_redis_keys(client, f"{prefix}:")
            finally:
                await client.aclose()

        def open_redis(retention_s: float = 3600.0) -> IdempotencyStore:
            return RedisStore(url, prefix=prefix, timeout_s=5, retention_s=retention_s)

        chosen = Backend("redis", open_redis, forget_keys, expires_by_ttl=True)
    else:
        await _require("postgresql", _probe_postgres)
        url = POSTGRES_URL
        schema = f"{POSTGRES_SCHEMA}_{namespace}"

        async def drop_schema() -> None:
            await drop_postgres_schema(url, schema)

        chosen = Backend(
            "postgresql", lambda **_: PostgresStore(url, schema=schema, timeout_s=5), drop_schema
        )
    try:
        yield chosen
    finally:
        await chosen.close_all()


@pytest.fixture
async def store(backend: Backend) -> IdempotencyStore:
    return await backend.open_replica()


@pytest.fixture
async def peer(backend: Backend, store: IdempotencyStore) -> IdempotencyStore:
    """A second replica on the same namespace (its own connection where the backend has one)."""
    return await backend.open_replica()
