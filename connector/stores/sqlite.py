"""The embedded store (`sqlite:///relative/path`, `sqlite:////absolute/path`), the default.

One sqlite3 connection on a thread of its own (so the event loop never blocks on the file), in WAL
mode. Operations are group-committed: the operations waiting when the thread becomes free run as one
`BEGIN IMMEDIATE` transaction, each inside a savepoint of its own. So, as with one transaction per
operation:

- each operation is atomic (a failing one is rolled back to its savepoint alone) and sees the effects
  of those queued before it, exactly as if they had run one after another;
- an operation returns only once the transaction holding it is committed;
- the transaction takes SQLite's write lock up front, so a claim is atomic even against another
  process using the same file.

But a batch costs one thread hop and one commit instead of one hop per statement and one commit per
operation: under load, hundreds of claims, outcomes and reports share a commit. An operation whose
caller gave up (timeout, cancellation) before its batch started is skipped.

`synchronous=NORMAL`: a commit survives the process being killed (the connector's failure mode);
a power cut may lose the last commits, which costs at most a repeated request (at least once).
In WAL mode a commit then writes the log and never waits for the disk; only a checkpoint (copying
the log into the database file) syncs. SQLite runs that checkpoint inside whichever commit crosses
1000 pages of log, so every few hundred commits one of them, and every operation queued behind it,
waited for the disk: on a busy disk, hundreds of milliseconds added to a delivery. Here a
connection of its own, on a thread of its own, checkpoints every `CHECKPOINT_INTERVAL_S` after a
commit (`PASSIVE`: it never blocks the store's writes, which go on into the log meanwhile), and the
log starts over from its beginning at the first commit after a checkpoint that copied all of it.
Under writes without a pause no such checkpoint comes (each ends behind the commits made while it
ran), so SQLite's own checkpoint stays, at `WAL_LIMIT_PAGES` instead of 1000: it bounds the log,
and finds most of it already copied and synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from connector.errors import StoreUnavailableError
from connector.models import Outcome, Platform
from connector.policies.backoff import Backoff
from connector.stores.base import (
    BatchedStore,
    Claim,
    ClaimStatus,
    DeliveryKey,
    DeliveryState,
    OrderRecords,
    ParkedDelivery,
    store_boundary,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS parked_deliveries (
    event_id    TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    connection  TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,
    value       BLOB    NOT NULL,
    traceparent TEXT,
    PRIMARY KEY (event_id, platform)
);
CREATE INDEX IF NOT EXISTS parked_deliveries_position
    ON parked_deliveries (platform, connection, partition, "offset");
"""

_PARKED_COLUMNS = 'event_id, platform, connection, topic, partition, "offset", value, traceparent'

_ERRORS = (sqlite3.Error, OSError, ValueError)
#: Operations in one transaction at most: bounds how long the first of them waits for the commit.
MAX_BATCH = 256
#: How often the log is copied into the database file (when something was committed since).
CHECKPOINT_INTERVAL_S = 1.0
#: The log's size (pages of 4 KiB) at which a commit checkpoints in place, as SQLite does at 1000.
WAL_LIMIT_PAGES = 10_000


def _enable_wal(db: sqlite3.Connection, timeout_s: float) -> str:
    # Switching the journal mode does not wait on the busy timeout: while another process opens
    # the same fresh file it fails at once with SQLITE_BUSY, so it is retried (within the timeout).
    deadline = time.monotonic() + timeout_s
    backoff = Backoff(0.005, 0.1)
    while True:
        try:
            row = db.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if not exc.sqlite_errorname.startswith("SQLITE_BUSY") or time.monotonic() > deadline:
                raise
            time.sleep(backoff.advance())
        else:
            return str(row[0]).lower()


class _Pending:
    """One queued operation: a function of the connection, run on the store's thread."""

    __slots__ = ("abandoned", "deadline", "future", "run")

    def __init__(
        self, run: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any], deadline: float
    ) -> None:
        self.run = run
        self.future = future
        #: Loop time by which the caller gets an answer, a timeout at the latest.
        self.deadline = deadline
        #: Set (on the event loop) when the caller stopped waiting; read on the store's thread.
        self.abandoned = False


class SqliteStore(BatchedStore):
    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self._path = Path(path)
        self._where = f"sqlite at {self._path}"
        self._timeout_s = timeout_s
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._queue: list[_Pending] = []
        #: The batch on the thread right now.
        self._running: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        # One timer for every waiting operation (deadlines follow queue order), not one per call.
        self._watchdog: asyncio.TimerHandle | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        #: Set on the event loop after each batch committed; the checkpointer clears it.
        self._committed = False

    async def open(self) -> None:
        if self._db is not None:
            return
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="order-sync-sqlite")
        try:
            async with self._boundary("open"):
                self._db = await asyncio.get_running_loop().run_in_executor(thread, self._connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        self._thread = thread
        self._checkpointer = asyncio.create_task(self._checkpoints(), name="sqlite-checkpoints")
        self._checkpointer.add_done_callback(self._checkpoints_ended)

    def _checkpoints_ended(self, task: asyncio.Task[None]) -> None:
        # Never silent: without the checkpointer, only commits past WAL_LIMIT_PAGES checkpoint.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s: background checkpoints stopped: %r", self._where, exc, exc_info=exc)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
            mode = _enable_wal(db, self._timeout_s)
            if mode != "wal":
                log.warning("%s: journal mode is %s, not WAL", self._where, mode)
            db.execute("PRAGMA synchronous = NORMAL")
            # Checkpoints are the checkpointer's (`_checkpoints`); in a commit only past the limit.
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_LIMIT_PAGES}")
            # Under the write lock, so two processes creating a fresh file at once do not race.
            db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
        except BaseException:
            db.close()
            raise
        return db

    async def _checkpoints(self) -> None:
        """Copy the log into the database file every `CHECKPOINT_INTERVAL_S` after a commit, from a
        connection and a thread of its own; until cancelled (at close). A failed checkpoint is
        logged when checkpoints start failing and when they work again, and tried again later: the
        log only grows meanwhile."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="order-sync-sqlite-checkpoint")
        loop = asyncio.get_running_loop()
        db: sqlite3.Connection | None = None
        failing = False
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_INTERVAL_S)
                if not self._committed:
                    continue
                self._committed = False
                try:
                    if db is None:
                        db = await loop.run_in_executor(thread, self._checkpoint_connection)
                    await loop.run_in_executor(thread, _checkpoint, db)
                except _ERRORS as exc:
                    self._committed = True
                    if not failing:
                        log.warning("%s: checkpoint failed (tried again): %s", self._where, exc)
                    failing = True
                    continue
                if failing:
                    log.info("%s: checkpoints work again", self._where)
                failing = False
        finally:
            if db is not None:
                with contextlib.suppress(*_ERRORS):
                    await asyncio.shield(loop.run_in_executor(thread, db.close))
            thread.shutdown(wait=False)

    def _checkpoint_connection(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
        return db

    async def close(self) -> None:
        db, self._db = self._db, None
        thread, self._thread = self._thread, None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.cancel()
            await asyncio.gather(checkpointer, return_exceptions=True)
        if db is None or thread is None:
            return
        # Operations already queued still run (and commit) before the connection closes.
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        try:
            await asyncio.get_running_loop().run_in_executor(thread, db.close)
        except _ERRORS as exc:
            log.warning("closing the SQLite store at %s failed: %s", self._path, exc)
        finally:
            thread.shutdown(wait=False)

    async def ping(self) -> None:
        await self._run("ping", lambda db: db.execute("SELECT 1").fetchall())

    async def check_events(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        def check(db: sqlite3.Connection) -> list[bool]:
            now = time.time()
            # In list order, the first fingerprint of an id is the one kept: as if one after another.
            db.executemany(
                "INSERT INTO events (event_id, fingerprint, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                [(event_id, fingerprint, now) for event_id, fingerprint in items],
            )
            stored = {
                event_id: fingerprint
                for event_id, fingerprint in _select_in(
                    db, "SELECT event_id, fingerprint FROM events WHERE event_id IN", [i for i, _ in items]
                )
            }
            return [stored.get(event_id) == fingerprint for event_id, fingerprint in items]

        return await self._run("check_event", check)

    async def claim_many(self, keys: Sequence[DeliveryKey], owner: str, lease_s: float) -> list[Claim]:
        def claim(db: sqlite3.Connection) -> list[Claim]:
            return _claim_all(db, keys, owner, lease_s, time.time())

        return await self._run("claim", claim)

    async def record_outcomes(
        self, items: Sequence[tuple[DeliveryKey, Outcome, bytes]], *, reported: bool = False
    ) -> None:
        state = DeliveryState.REPORTED.value if reported else DeliveryState.DONE.value

        def record(db: sqlite3.Connection) -> None:
            now = time.time()
            # Each statement runs for the items in list order; the two tables do not read each other.
            db.executemany(
                "INSERT INTO deliveries "
                "(event_id, platform, state, owner, claimed_at, outcome, result, touched_at) "
                "VALUES (?, ?, ?, NULL, ?, ?, ?, ?) "
                "ON CONFLICT (event_id, platform) DO UPDATE SET "
                "state = CASE WHEN state = 'reported' THEN 'reported' ELSE excluded.state END, "
                "result = CASE WHEN state = 'reported' THEN NULL ELSE excluded.result END, "
                "outcome = excluded.outcome, touched_at = excluded.touched_at",
                [
                    (
                        key.event_id,
                        key.platform.value,
                        state,
                        now,
                        outcome.value,
                        None if reported else result,
                        now,
                    )
                    for key, outcome, result in items
                ],
            )
            db.executemany(
                "INSERT INTO applied_versions (order_number, platform, version) VALUES (?, ?, ?) "
                "ON CONFLICT (order_number, platform) DO UPDATE SET version = excluded.version "
                "WHERE excluded.version > version",
                [
                    (key.order_number, key.target, key.version)
                    for key, outcome, _ in items
                    if outcome is Outcome.APPLIED
                ],
            )

        await self._run("record_outcome", record)

    async def order_records(self, order_number: str, event_ids: Sequence[str]) -> OrderRecords:
        def read(db: sqlite3.Connection) -> OrderRecords:
            applied = db.execute(
                "SELECT platform, version FROM applied_versions WHERE order_number = ?", (order_number,)
            ).fetchall()
            states = _select_in(
                db, "SELECT event_id, platform, state FROM deliveries WHERE event_id IN", event_ids
            )
            parked = _select_in(
                db, "SELECT event_id, platform FROM parked_deliveries WHERE event_id IN", event_ids
            )
            return OrderRecords(
                {str(p): int(v) for p, v in applied},
                {(e, Platform(p)): DeliveryState(state) for e, p, state in states},
                frozenset((str(e), Platform(p)) for e, p in parked),
            )

        return await self._run("order_records", read)

    async def mark_reported(self, keys: list[DeliveryKey]) -> None:
        if not keys:
            return

        def mark(db: sqlite3.Connection) -> None:
            now = time.time()
            db.executemany(
                "UPDATE deliveries SET state = 'reported', result = NULL, touched_at = ? "
                "WHERE event_id = ? AND platform = ?",
                [(now, key.event_id, key.platform.value) for key in keys],
            )

        await self._run("mark_reported", mark)

    async def park(self, items: Sequence[ParkedDelivery]) -> None:
        if not items:
            return

        def park(db: sqlite3.Connection) -> None:
            # DO NOTHING keeps the first of a delivery parked twice (consumed again after a crash).
            db.executemany(
                f"INSERT INTO parked_deliveries ({_PARKED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id, platform) DO NOTHING",
                [
                    (
                        item.event_id,
                        item.platform.value,
                        item.connection,
                        item.topic,
                        item.partition,
                        item.offset,
                        item.value,
                        item.traceparent,
                    )
                    for item in items
                ],
            )

        await self._run("park", park)

    async def parked(
        self, platform: Platform, connection: str, partitions: Sequence[int], limit: int
    ) -> list[ParkedDelivery]:
        wanted = sorted(set(partitions))
        if not wanted or limit <= 0:
            return []

        def read(db: sqlite3.Connection) -> list[ParkedDelivery]:
            # The IN list is walked in ascending order over the position index, so the rows come out
            # in (partition, offset) order without a sort and the LIMIT stops the scan early; the
            # chunks of partitions ascend too, so their rows simply follow one another.
            found: list[ParkedDelivery] = []
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows = db.execute(
                    f"SELECT {_PARKED_COLUMNS} FROM parked_deliveries "
                    f"WHERE platform = ? AND connection = ? AND partition IN ({','.join('?' * len(chunk))}) "
                    'ORDER BY partition, "offset" LIMIT ?',
                    (platform.value, connection, *chunk, limit - len(found)),
                ).fetchall()
                found.extend(_parked_from(row) for row in rows)
                if len(found) >= limit:
                    break
            return found

        return await self._run("parked", read)

    async def unpark(self, items: Sequence[ParkedDelivery]) -> None:
        if not items:
            return

        def unpark(db: sqlite3.Connection) -> None:
            db.executemany(
                "DELETE FROM parked_deliveries WHERE event_id = ? AND platform = ?",
                [(item.event_id, item.platform.value) for item in items],
            )

        await self._run("unpark", unpark)

    async def parked_counts(
        self, platform: Platform, partitions: Sequence[int]
    ) -> dict[tuple[str, int], int]:
        wanted = sorted(set(partitions))
        if not wanted:
            return {}

        def count(db: sqlite3.Connection) -> dict[tuple[str, int], int]:
            counts: dict[tuple[str, int], int] = {}
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows = db.execute(
                    "SELECT connection, partition, count(*) FROM parked_deliveries "
                    f"WHERE platform = ? AND partition IN ({','.join('?' * len(chunk))}) "
                    "GROUP BY connection, partition",
                    (platform.value, *chunk),
                ).fetchall()
                counts.update({(str(c), int(p)): int(n) for c, p, n in rows})
            return counts

        return await self._run("parked_counts", count)

    async def release(self, key: DeliveryKey, owner: str) -> None:
        def release(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM deliveries "
                "WHERE event_id = ? AND platform = ? AND state = 'claimed' AND owner = ?",
                (key.event_id, key.platform.value, owner),
            )

        await self._run("release", release)

    async def purge(self, older_than: datetime, limit: int) -> int:
        cutoff = older_than.timestamp()

        def purge(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM deliveries WHERE rowid IN "
                "(SELECT rowid FROM deliveries WHERE touched_at < ? ORDER BY touched_at LIMIT ?)",
                (cutoff, limit),
            )
            removed = max(cursor.rowcount, 0)
            if removed < limit:
                cursor = db.execute(
                    "DELETE FROM events WHERE rowid IN "
                    "(SELECT rowid FROM events WHERE seen_at < ? ORDER BY seen_at LIMIT ?)",
                    (cutoff, limit - removed),
                )
                removed += max(cursor.rowcount, 0)
            return removed

        return await self._run("purge", purge)

    def _boundary(self, operation: str) -> contextlib.AbstractAsyncContextManager[None]:
        return store_boundary(self._where, operation, self._timeout_s, _ERRORS)

    async def _run(self, operation: str, run: Callable[[sqlite3.Connection], T]) -> T:
        """Queue `run` for the next batch and wait until that batch is committed (or the timeout)."""
        if self._db is None:
            raise StoreUnavailableError(f"{self._where}: {operation}: the store is not open")
        loop = asyncio.get_running_loop()
        pending = _Pending(run, loop.create_future(), loop.time() + self._timeout_s)
        self._queue.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(self._db), name="sqlite-group-commit")
        if self._watchdog is None:
            self._watchdog = loop.call_at(pending.deadline, self._expire)
        try:
            result: T = await pending.future
        except asyncio.CancelledError:
            pending.abandoned = True
            raise
        except TimeoutError as exc:
            raise StoreUnavailableError(
                f"{self._where}: {operation} timed out after {self._timeout_s:g}s"
            ) from exc
        except _ERRORS as exc:
            raise StoreUnavailableError(f"{self._where}: {operation} failed: {exc}") from exc
        return result

    def _expire(self) -> None:
        """Fail the operations past their deadline; re-arm for the oldest one still waiting."""
        self._watchdog = None
        now = asyncio.get_running_loop().time()
        for pending in itertools.chain(self._running, self._queue):
            if pending.future.done():
                continue
            if pending.deadline > now:
                self._watchdog = asyncio.get_running_loop().call_at(pending.deadline, self._expire)
                return
            pending.abandoned = True
            pending.future.set_exception(TimeoutError())

    async def _flush(self, db: sqlite3.Connection) -> None:
        # One batch at a time: operations queued while it runs make up the next one.
        loop = asyncio.get_running_loop()
        thread = self._thread
        while self._queue:
            batch = [p for p in self._queue[:MAX_BATCH] if not p.future.done()]
            del self._queue[:MAX_BATCH]
            if not batch:
                continue
            self._running = batch
            try:
                if thread is None:
                    raise sqlite3.ProgrammingError("the store is closed")
                outcomes = await loop.run_in_executor(thread, _run_batch, db, batch)
            except BaseException as exc:
                self._running = []
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(
                            exc if isinstance(exc, Exception) else asyncio.CancelledError()
                        )
                if not isinstance(exc, Exception):
                    raise
                continue
            self._running = []
            self._committed = True
            for pending, (ok, value) in zip(batch, outcomes, strict=True):
                if pending.future.done():
                    continue
                if ok:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(value)


def _checkpoint(db: sqlite3.Connection) -> None:
    # PASSIVE: copies what no reader still needs, without waiting for (or blocking) any writer.
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _claim_all(
    db: sqlite3.Connection, keys: Sequence[DeliveryKey], owner: str, lease_s: float, now: float
) -> list[Claim]:
    """Claims for `keys`, answered as if one after another, in three statements for the whole batch:
    what the store holds of them, their orders' applied versions, and the claims written."""
    held = {
        (event_id, platform): (state, holder, claimed_at, result)
        for event_id, platform, state, holder, claimed_at, result in _select_in(
            db,
            "SELECT event_id, platform, state, owner, claimed_at, result FROM deliveries WHERE event_id IN",
            [key.event_id for key in keys],
        )
    }
    applied = {
        (order_number, platform): int(version)
        for order_number, platform, version in _select_in(
            db,
            "SELECT order_number, platform, version FROM applied_versions WHERE order_number IN",
            [key.order_number for key in keys],
        )
    }
    claims: list[Claim] = []
    written: list[tuple[str, str, str, float, float]] = []
    for key in keys:
        record = (key.event_id, key.platform.value)
        row = held.get(record)
        if row is not None:
            state, holder, claimed_at, result = row
            if state == DeliveryState.REPORTED:
                claims.append(Claim(ClaimStatus.DUPLICATE))
                continue
            if state == DeliveryState.DONE:
                claims.append(Claim(ClaimStatus.UNREPORTED, result=None if result is None else bytes(result)))
                continue
            if holder != owner and now - claimed_at < lease_s:
                claims.append(Claim(ClaimStatus.BUSY))
                continue
        written.append((key.event_id, key.platform.value, owner, now, now))
        # A later claim of the same delivery in this batch finds this one, as it would one by one.
        held[record] = (DeliveryState.CLAIMED.value, owner, now, None)
        version = applied.get((key.order_number, key.target))
        if version is not None and key.version <= version:
            claims.append(Claim(ClaimStatus.STALE, applied_version=version))
        else:
            claims.append(Claim(ClaimStatus.PROCEED))
    db.executemany(
        "INSERT INTO deliveries (event_id, platform, state, owner, claimed_at, touched_at) "
        "VALUES (?, ?, 'claimed', ?, ?, ?) "
        "ON CONFLICT (event_id, platform) DO UPDATE SET "
        "owner = excluded.owner, claimed_at = excluded.claimed_at, touched_at = excluded.touched_at",
        written,
    )
    return claims


def _parked_from(row: Any) -> ParkedDelivery:
    event_id, platform, connection, topic, partition, offset, value, traceparent = row
    return ParkedDelivery(
        event_id,
        Platform(platform),
        connection,
        topic,
        int(partition),
        int(offset),
        bytes(value),
        traceparent,
    )


#: Host parameters in one `IN (...)` list; SQLite allows 32 766 since 3.32, 999 before.
_IN_CHUNK = 500


def _select_in(db: sqlite3.Connection, query: str, values: Sequence[str]) -> list[Any]:
    """`query (?, ?, ...)` over `values` (deduplicated), in chunks; all rows."""
    distinct = list(dict.fromkeys(values))
    rows: list[Any] = []
    for start in range(0, len(distinct), _IN_CHUNK):
        chunk = distinct[start : start + _IN_CHUNK]
        rows.extend(db.execute(f"{query} ({','.join('?' * len(chunk))})", chunk).fetchall())
    return rows


def _run_batch(db: sqlite3.Connection, batch: list[_Pending]) -> list[tuple[bool, Any]]:
    """On the store's thread: every operation of `batch` in one transaction, each in a savepoint."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except _ERRORS as exc:
        return [(False, exc)] * len(batch)
    outcomes: list[tuple[bool, Any]] = []
    try:
        for pending in batch:
            if pending.abandoned:
                outcomes.append((False, asyncio.CancelledError()))
                continue
            db.execute("SAVEPOINT operation")
            try:
                value = pending.run(db)
            except Exception as exc:
                db.execute("ROLLBACK TO operation")
                db.execute("RELEASE operation")
                outcomes.append((False, exc))
            else:
                db.execute("RELEASE operation")
                outcomes.append((True, value))
        db.execute("COMMIT")
    except _ERRORS as exc:
        with contextlib.suppress(*_ERRORS):
            db.execute("ROLLBACK")
        return [(False, exc)] * len(batch)
    return outcomes
