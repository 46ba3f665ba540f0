"""`open_store` picks the backend from the URL scheme and never quotes the URL in its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.models import Platform
from connector.stores.base import ClaimStatus, DeliveryKey
from connector.stores.factory import open_store
from connector.stores.memory import MemoryStore
from connector.stores.postgres import PostgresStore
from connector.stores.redis import RedisStore
from connector.stores.sqlite import SqliteStore


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryStore),
        ("sqlite:///order-sync.db", SqliteStore),
        ("redis://localhost:6379/0", RedisStore),
        ("rediss://user:pw@cache.example:6380/1", RedisStore),
        ("postgresql://user:pw@db.example/orders", PostgresStore),
        ("postgres://db.example/orders", PostgresStore),
        ("PostgreSQL://db.example/orders", PostgresStore),
    ],
)
async def test_scheme_chooses_the_backend(url: str, kind: type) -> None:
    store = open_store(url, 1.0)

    assert isinstance(store, kind)
    await store.close()


async def test_sqlite_url_with_three_slashes_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data.db")
    await store.open()
    await store.close()

    assert (tmp_path / "data.db").exists()


async def test_sqlite_url_with_four_slashes_is_absolute(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/absolute.db")
    await store.open()
    try:
        key = DeliveryKey("evt-1", Platform.VUCUSTOM, "ord-1", 1)
        assert (await store.claim(key, "a", 60)).status is ClaimStatus.PROCEED
    finally:
        await store.close()

    assert (tmp_path / "absolute.db").exists()


@pytest.mark.parametrize(
    "url",
    ["mysql://user:hunter2-secret@db/orders", "hunter2-secret", "sqlite://hunter2-secret/x.db", "sqlite:///"],
)
def test_unusable_urls_are_config_errors_that_hide_the_url(url: str) -> None:
    with pytest.raises(ConfigError, match=r"idempotency\.url") as caught:
        open_store(url)

    assert "hunter2-secret" not in str(caught.value)
