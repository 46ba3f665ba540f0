"""SQLite specifics: WAL, clear errors, and a lock held by another process bounded by the timeout."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.errors import StoreUnavailableError
from connector.models import Platform
from connector.stores.base import ClaimStatus, DeliveryKey
from connector.stores.sqlite import SqliteStore


def a_delivery() -> DeliveryKey:
    return DeliveryKey(f"evt-{uuid.uuid4()}", Platform.VENTMERE, "ord-1", 1)


@pytest.fixture
def other_process_connection(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the store's file, standing in for another process."""
    connection = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    yield connection
    connection.close()


async def test_open_creates_the_database_in_wal_mode(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    await store.close()

    with sqlite3.connect(tmp_path / "store.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"deliveries", "events", "applied_versions", "parked_deliveries"}


async def test_open_on_an_unusable_path_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing-directory" / "store.db"

    with pytest.raises(StoreUnavailableError, match=f"^sqlite at {path}: open failed"):
        await SqliteStore(path).open()


async def test_operations_before_open_are_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="not open"):
        await SqliteStore(tmp_path / "store.db").ping()


async def test_a_lock_held_elsewhere_times_out_and_the_store_recovers(
    tmp_path: Path, other_process_connection: sqlite3.Connection
) -> None:
    store = SqliteStore(tmp_path / "store.db", timeout_s=0.3)
    await store.open()
    try:
        other_process_connection.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await store.claim(a_delivery(), "a", 60)
        assert time.monotonic() - started < 2

        other_process_connection.execute("ROLLBACK")
        # No transaction was left open on the store's connection by the failed claim.
        assert (await store.claim(a_delivery(), "a", 60)).status is ClaimStatus.PROCEED
    finally:
        await store.close()
