"""SQLite specifics: WAL, clear errors, and a lock held by another process bounded by the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.errors import StoreUnavailableError
from connector.models import Platform
from connector.stores import sqlite as sqlite_store
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


def _deliveries_in_the_file(path: Path) -> int:
    """Rows in the database file itself, the log (`-wal`) left out: what checkpoints copied there."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as connection:
        tables = connection.execute("SELECT count(*) FROM sqlite_master WHERE name = 'deliveries'").fetchone()
        if not tables[0]:
            return 0
        return int(connection.execute("SELECT count(*) FROM deliveries").fetchone()[0])


async def test_commits_leave_the_checkpoint_to_a_thread_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint syncs the disk; inside a commit it would hold every operation queued behind it.
    # Fifty claims are far below SQLite's own threshold (1000 pages of log), so their rows reach the
    # database file only through the store's checkpointer.
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_S", 0.05)
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    await store.open()
    try:
        keys = [a_delivery() for _ in range(50)]
        claims = await store.claim_many(keys, "replica-a", 60)
        assert {claim.status for claim in claims} == {ClaimStatus.PROCEED}
        async with asyncio.timeout(5):
            while await asyncio.to_thread(_deliveries_in_the_file, path) < len(keys):  # noqa: ASYNC110 - a file
                await asyncio.sleep(0.02)
    finally:
        await store.close()


async def test_the_log_stays_bounded_under_writes_without_a_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each background checkpoint ends behind the commits made while it ran, so under writes that
    # never pause, the log would only grow; past WAL_LIMIT_PAGES a commit checkpoints in place.
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr(sqlite_store, "WAL_LIMIT_PAGES", 100)
    path = tmp_path / "store.db"
    log = Path(f"{path}-wal")
    store = SqliteStore(path)
    await store.open()
    written = 0
    largest = 0
    try:
        for _ in range(150):
            keys = [a_delivery() for _ in range(32)]
            await store.claim_many(keys, "replica-a", 60)
            written += len(keys)
            largest = max(largest, (await asyncio.to_thread(log.stat)).st_size)
    finally:
        await store.close()
    page = 4096
    assert written == 4800
    # Far more was written than the limit (the log of a claim is a page or more).
    assert largest <= 4 * 100 * page, f"the log reached {largest // page} pages"


async def test_a_checkpointer_that_dies_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_S", 0.01)

    def broken(db: sqlite3.Connection) -> None:
        raise RuntimeError("a bug in the checkpointer")

    monkeypatch.setattr(sqlite_store, "_checkpoint", broken)
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    try:
        await store.claim_many([a_delivery()], "replica-a", 60)
        async with asyncio.timeout(5):
            while "background checkpoints stopped" not in caplog.text:  # noqa: ASYNC110 - a log line
                await asyncio.sleep(0.01)
        # The store goes on without it.
        claims = await store.claim_many([a_delivery()], "replica-a", 60)
        assert claims[0].status is ClaimStatus.PROCEED
    finally:
        await store.close()
    assert "a bug in the checkpointer" in caplog.text
