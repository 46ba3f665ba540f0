"""The embedded store (`sqlite:///relative/path`, `sqlite:////absolute/path`), the default.

One aiosqlite connection (its own thread, so the event loop never blocks on the file) in WAL mode.
Each operation is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock up front, so a claim
is atomic even against another process using the same file, and an asyncio lock keeps this process's
coroutines from interleaving statements on the shared connection.

`synchronous=NORMAL`: a commit survives the process being killed (the connector's failure mode);
a power cut may lose the last commits, which costs at most a repeated request (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiosqlite

from connector.errors import StoreUnavailableError
from connector.idempotency.base import Claim, ClaimStatus, DeliveryKey, DeliveryState, IdempotencyStore
from connector.models import Outcome

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    event_id   TEXT    NOT NULL,
    platform   TEXT    NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('claimed', 'done', 'reported')),
    owner      TEXT,
    claimed_at REAL    NOT NULL,
    outcome    TEXT,
    result     BLOB,
    touched_at REAL    NOT NULL,
    PRIMARY KEY (event_id, platform)
);
CREATE INDEX IF NOT EXISTS deliveries_touched_at ON deliveries (touched_at);
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    seen_at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_seen_at ON events (seen_at);
CREATE TABLE IF NOT EXISTS applied_versions (
    order_number TEXT    NOT NULL,
    platform     TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (order_number, platform)
);
"""

_ERRORS = (sqlite3.Error, OSError, ValueError)


async def _enable_wal(db: aiosqlite.Connection) -> str:
    # Switching the journal mode does not wait on the busy timeout: while another process opens
    # the same fresh file it fails at once with SQLITE_BUSY, so it is retried (within open's timeout).
    delay = 0.005
    while True:
        try:
            rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
        except sqlite3.OperationalError as exc:
            if not exc.sqlite_errorname.startswith("SQLITE_BUSY"):
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        else:
            return str(rows[0][0]).lower()


class SqliteStore(IdempotencyStore):
    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self._path = Path(path)
        self._where = f"sqlite at {self._path}"
        self._timeout_s = timeout_s
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._db is not None:
            return
        async with self._boundary("open"):
            db = await aiosqlite.connect(self._path, isolation_level=None)
            try:
                await db.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
                mode = await _enable_wal(db)
                if mode != "wal":
                    log.warning("%s: journal mode is %s, not WAL", self._where, mode)
                await db.execute("PRAGMA synchronous = NORMAL")
                # Under the write lock, so two processes creating a fresh file at once do not race.
                await db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
            except BaseException:
                await db.close()
                raise
            self._db = db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        async with self._lock:
            try:
                await db.close()
            except _ERRORS as exc:
                log.warning("closing the SQLite store at %s failed: %s", self._path, exc)

    async def ping(self) -> None:
        async with self._transaction("ping") as db:
            await db.execute_fetchall("SELECT 1")

    async def check_event(self, event_id: str, fingerprint: str) -> bool:
        async with self._transaction("check_event") as db:
            await db.execute(
                "INSERT INTO events (event_id, fingerprint, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                (event_id, fingerprint, time.time()),
            )
            rows = list(
                await db.execute_fetchall("SELECT fingerprint FROM events WHERE event_id = ?", (event_id,))
            )
        return bool(rows[0][0] == fingerprint)

    async def claim(self, key: DeliveryKey, owner: str, lease_s: float) -> Claim:
        async with self._transaction("claim") as db:
            now = time.time()
            rows = list(
                await db.execute_fetchall(
                    "SELECT state, owner, claimed_at, result FROM deliveries "
                    "WHERE event_id = ? AND platform = ?",
                    (key.event_id, key.platform.value),
                )
            )
            if rows:
                state, holder, claimed_at, result = rows[0]
                if state == DeliveryState.REPORTED:
                    return Claim(ClaimStatus.DUPLICATE)
                if state == DeliveryState.DONE:
                    return Claim(ClaimStatus.UNREPORTED, result=None if result is None else bytes(result))
                if holder != owner and now - claimed_at < lease_s:
                    return Claim(ClaimStatus.BUSY)
            await db.execute(
                "INSERT INTO deliveries (event_id, platform, state, owner, claimed_at, touched_at) "
                "VALUES (?, ?, 'claimed', ?, ?, ?) "
                "ON CONFLICT (event_id, platform) DO UPDATE SET "
                "owner = excluded.owner, claimed_at = excluded.claimed_at, touched_at = excluded.touched_at",
                (key.event_id, key.platform.value, owner, now, now),
            )
            applied = await self._applied_version(db, key)
        if applied is not None and key.version <= applied:
            return Claim(ClaimStatus.STALE, applied_version=applied)
        return Claim(ClaimStatus.PROCEED)

    async def record_outcome(self, key: DeliveryKey, outcome: Outcome, result: bytes) -> None:
        async with self._transaction("record_outcome") as db:
            now = time.time()
            await db.execute(
                "INSERT INTO deliveries "
                "(event_id, platform, state, owner, claimed_at, outcome, result, touched_at) "
                "VALUES (?, ?, 'done', NULL, ?, ?, ?, ?) "
                "ON CONFLICT (event_id, platform) DO UPDATE SET "
                "state = CASE WHEN state = 'reported' THEN 'reported' ELSE 'done' END, "
                "result = CASE WHEN state = 'reported' THEN NULL ELSE excluded.result END, "
                "outcome = excluded.outcome, touched_at = excluded.touched_at",
                (key.event_id, key.platform.value, now, outcome.value, result, now),
            )
            if outcome is Outcome.APPLIED:
                await db.execute(
                    "INSERT INTO applied_versions (order_number, platform, version) VALUES (?, ?, ?) "
                    "ON CONFLICT (order_number, platform) DO UPDATE SET version = excluded.version "
                    "WHERE excluded.version > version",
                    (key.order_number, key.platform.value, key.version),
                )

    async def mark_reported(self, keys: list[DeliveryKey]) -> None:
        if not keys:
            return
        async with self._transaction("mark_reported") as db:
            now = time.time()
            await db.executemany(
                "UPDATE deliveries SET state = 'reported', result = NULL, touched_at = ? "
                "WHERE event_id = ? AND platform = ?",
                [(now, key.event_id, key.platform.value) for key in keys],
            )

    async def release(self, key: DeliveryKey, owner: str) -> None:
        async with self._transaction("release") as db:
            await db.execute(
                "DELETE FROM deliveries "
                "WHERE event_id = ? AND platform = ? AND state = 'claimed' AND owner = ?",
                (key.event_id, key.platform.value, owner),
            )

    async def purge(self, older_than: datetime, limit: int) -> int:
        cutoff = older_than.timestamp()
        async with self._transaction("purge") as db:
            cursor = await db.execute(
                "DELETE FROM deliveries WHERE rowid IN "
                "(SELECT rowid FROM deliveries WHERE touched_at < ? ORDER BY touched_at LIMIT ?)",
                (cutoff, limit),
            )
            removed = max(cursor.rowcount, 0)
            if removed < limit:
                cursor = await db.execute(
                    "DELETE FROM events WHERE rowid IN "
                    "(SELECT rowid FROM events WHERE seen_at < ? ORDER BY seen_at LIMIT ?)",
                    (cutoff, limit - removed),
                )
                removed += max(cursor.rowcount, 0)
        return removed

    @staticmethod
    async def _applied_version(db: aiosqlite.Connection, key: DeliveryKey) -> int | None:
        rows = list(
            await db.execute_fetchall(
                "SELECT version FROM applied_versions WHERE order_number = ? AND platform = ?",
                (key.order_number, key.platform.value),
            )
        )
        return int(rows[0][0]) if rows else None

    @contextlib.asynccontextmanager
    async def _boundary(self, operation: str) -> AsyncIterator[None]:
        """Bounds `operation` by the timeout and turns driver failures into `StoreUnavailableError`."""
        try:
            async with asyncio.timeout(self._timeout_s):
                yield
        except TimeoutError as exc:
            raise StoreUnavailableError(
                f"{self._where}: {operation} timed out after {self._timeout_s:g}s"
            ) from exc
        except _ERRORS as exc:
            raise StoreUnavailableError(f"{self._where}: {operation} failed: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self, operation: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._boundary(operation), self._lock:
            db = self._db
            if db is None:
                raise StoreUnavailableError(f"{self._where}: {operation}: the store is not open")
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                # Queued on the connection's thread before the lock is released, so it runs before
                # anyone else's BEGIN, even when this task was cancelled mid-statement.
                with contextlib.suppress(*_ERRORS):
                    await db.execute("ROLLBACK")
                raise
