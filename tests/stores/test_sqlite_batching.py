"""The SQLite store's group commit: many operations share a transaction, each keeps its own outcome.

The transactions are observed at the driver boundary: while a store opens, `sqlite3.connect` is
wrapped so that the store's own connection traces every statement it executes (with parameters
expanded) to a `Trace`. Nothing in the store is replaced or reached into; the trace only counts
`BEGIN IMMEDIATE` / `SAVEPOINT` / `COMMIT` and, where a test needs to act at a precise moment, lets
it hold the store's thread at a chosen statement.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connector.errors import StoreUnavailableError
from connector.models import Outcome, Platform
from connector.stores.base import Claim, ClaimStatus, DeliveryKey, IdempotencyStore
from connector.stores.memory import MemoryStore
from connector.stores.sqlite import MAX_BATCH, SqliteStore

LEASE = 60.0
_real_connect = sqlite3.connect


@dataclass
class Trace:
    """Statements the store's connection ran, in order (appended on the store's thread)."""

    statements: list[str] = field(default_factory=list)
    #: Called on the store's thread before each statement runs; may block it.
    hooks: list[Callable[[str], None]] = field(default_factory=list)

    def __call__(self, sql: str) -> None:
        self.statements.append(sql)
        for hook in list(self.hooks):
            hook(sql)

    def count(self, statement: str) -> int:
        return sum(1 for sql in self.statements if sql == statement)

    def commits(self) -> int:
        return self.count("COMMIT")


async def open_traced(
    path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[SqliteStore, Trace]:
    trace = Trace()

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection: sqlite3.Connection = _real_connect(*args, **kwargs)
        connection.set_trace_callback(trace)
        return connection

    store = SqliteStore(path, **options)
    with monkeypatch.context() as patch:
        patch.setattr(sqlite3, "connect", connect)
        await store.open()
    trace.statements.clear()  # the schema set-up is not under test
    return store, trace


@contextmanager
def plain_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's view of the file."""
    connection = _real_connect(path, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


def delivery_row(path: Path, key: DeliveryKey) -> tuple[Any, ...] | None:
    with plain_connection(path) as connection:
        row: tuple[Any, ...] | None = connection.execute(
            "SELECT state, owner, outcome, result FROM deliveries WHERE event_id = ? AND platform = ?",
            (key.event_id, key.platform.value),
        ).fetchone()
    return row


def applied_version(path: Path, order: str, platform: Platform = Platform.VUCUSTOM) -> int | None:
    with plain_connection(path) as connection:
        row = connection.execute(
            "SELECT version FROM applied_versions WHERE order_number = ? AND platform = ?",
            (order, platform.value),
        ).fetchone()
    return None if row is None else int(row[0])


def key_for(order: str, version: int = 1, event_id: str | None = None) -> DeliveryKey:
    return DeliveryKey(event_id or f"evt-{uuid.uuid4()}", Platform.VUCUSTOM, order, version)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
async def stores() -> Any:
    """Closes every store a test opened, whatever happened."""
    opened: list[SqliteStore] = []
    yield opened
    await asyncio.gather(*(store.close() for store in opened), return_exceptions=True)


# --- 1. many operations, few transactions, each answer as if alone -------------------------------


@dataclass(frozen=True)
class Op:
    kind: str
    key: DeliveryKey
    owner: str = ""
    outcome: Outcome = Outcome.APPLIED
    data: str = ""

    async def on(self, store: IdempotencyStore) -> Any:
        if self.kind == "claim":
            return await store.claim(self.key, self.owner, LEASE)
        if self.kind == "outcome":
            return await store.record_outcome(self.key, self.outcome, self.data.encode())
        if self.kind == "release":
            return await store.release(self.key, self.owner)
        if self.kind == "report":
            return await store.mark_reported([self.key])
        return await store.check_event(self.key.event_id, self.data)


def a_workload(seed: int, size: int) -> list[Op]:
    """Claims, outcomes, releases, reports and fingerprints over a few keys, so answers depend on order."""
    rng = random.Random(seed)
    orders = [f"ord-{n}" for n in range(8)]
    keys = [key_for(rng.choice(orders), rng.randint(1, 6), f"evt-{n}") for n in range(40)]
    with_outcome: set[DeliveryKey] = set()
    ops: list[Op] = []
    for _ in range(size):
        key, owner = rng.choice(keys), rng.choice("abc")
        kind = rng.choices(["claim", "outcome", "release", "report", "event"], [5, 3, 1, 1, 1])[0]
        if kind == "report" and key not in with_outcome:
            # Reporting a delivery without an outcome is outside the state diagram (and the memory
            # store then lets `release` drop it while SQLite keeps it REPORTED).
            kind = "claim"
        if kind == "outcome":
            outcome = rng.choice([Outcome.APPLIED, Outcome.REJECTED])
            with_outcome.add(key)
            ops.append(Op(kind, key, outcome=outcome, data=f"{key.event_id}:{outcome}:{rng.random()}"))
        elif kind == "event":
            ops.append(Op(kind, key, data=rng.choice(["fp-1", "fp-2"])))
        else:
            ops.append(Op(kind, key, owner=owner))
    return ops


async def test_concurrent_operations_share_transactions_and_each_gets_its_sequential_answer(
    path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[SqliteStore]
) -> None:
    ops = a_workload(seed=20240611, size=500)
    store, trace = await open_traced(path, monkeypatch)
    stores.append(store)

    # gather starts the calls in argument order, and each queues its operation at once: the order
    # the batches run them in is the argument order, so a sequential reference applies.
    answers = await asyncio.gather(*(op.on(store) for op in ops))

    reference = MemoryStore()
    expected = [await op.on(reference) for op in ops]
    assert answers == expected
    statuses = {answer.status for answer in answers if isinstance(answer, Claim)}
    assert statuses == set(ClaimStatus)  # the workload reaches every answer, so order mattered
    # One savepoint per operation, but far fewer transactions (batches are capped at MAX_BATCH).
    assert trace.count("SAVEPOINT operation") == len(ops)
    assert trace.count("BEGIN IMMEDIATE") == trace.commits()
    assert -(-len(ops) // MAX_BATCH) <= trace.commits() < len(ops) // 10

    # What the callers were told is what the file holds for another reader.
    await store.close()
    restarted = SqliteStore(path)
    stores.append(restarted)
    await restarted.open()
    # Every delivery, probed by a new owner with a version of its own, answers alike on both.
    for n in range(40):
        probe = DeliveryKey(f"evt-{n}", Platform.VUCUSTOM, "ord-probe", 1)
        assert await restarted.claim(probe, "z", LEASE) == await reference.claim(probe, "z", LEASE), n


# --- 2. a failing operation fails alone --------------------------------------------------------

POISON_ORDER = "ord-poison"


def poison_applied_versions(path: Path, action: str) -> None:
    """From another connection: a trigger that fails, with RAISE(`action`), every applied version
    written for POISON_ORDER."""
    with plain_connection(path) as connection:
        connection.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON applied_versions "
            f"WHEN NEW.order_number = '{POISON_ORDER}' BEGIN SELECT RAISE({action}, 'poisoned order'); END"
        )


async def test_an_operation_failing_inside_a_batch_fails_only_its_caller(
    path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[SqliteStore]
) -> None:
    store, trace = await open_traced(path, monkeypatch)
    stores.append(store)
    # Another process adds a trigger that refuses one order's applied version: record_outcome of that
    # delivery fails at its second statement, after its first one (the delivery's row) succeeded.
    poison_applied_versions(path, "ABORT")
    good = [key_for(f"ord-{n}", 3) for n in range(20)]
    poisoned = key_for(POISON_ORDER, 3)
    keys = [*good[:10], poisoned, *good[10:]]

    results = await asyncio.gather(
        *(store.claim(key, "a", LEASE) for key in keys),
        *(store.record_outcome(key, Outcome.APPLIED, key.event_id.encode()) for key in keys),
        store.check_event("evt-seen", "fp"),
        return_exceptions=True,
    )

    assert trace.commits() == 1  # all of it was one transaction
    claims, outcomes = results[: len(keys)], results[len(keys) : 2 * len(keys)]
    assert claims == [Claim(ClaimStatus.PROCEED)] * len(keys)
    failed = outcomes[keys.index(poisoned)]
    assert isinstance(failed, StoreUnavailableError)
    assert "poisoned order" in str(failed)
    assert isinstance(failed.__cause__, sqlite3.IntegrityError)
    assert [o for i, o in enumerate(outcomes) if i != keys.index(poisoned)] == [None] * len(good)
    assert results[-1] is True

    await store.close()
    with plain_connection(path) as connection:
        connection.execute("DROP TRIGGER poison")
    restarted = SqliteStore(path)
    stores.append(restarted)
    await restarted.open()
    for key in good:
        assert delivery_row(path, key) == ("done", "a", "applied", key.event_id.encode())
        assert await restarted.claim(key, "b", LEASE) == Claim(
            ClaimStatus.UNREPORTED, result=key.event_id.encode()
        )
        assert applied_version(path, key.order_number) == 3
    # The failed operation left nothing behind, not even its first statement; its claim (an
    # operation of its own) stands.
    assert delivery_row(path, poisoned) == ("claimed", "a", None, None)
    assert applied_version(path, POISON_ORDER) is None
    assert await restarted.claim(poisoned, "b", LEASE) == Claim(ClaimStatus.BUSY)
    assert await restarted.check_event("evt-seen", "other") is False


async def test_an_error_that_ends_the_transaction_fails_the_whole_batch_and_commits_none_of_it(
    path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[SqliteStore]
) -> None:
    store, trace = await open_traced(path, monkeypatch)
    stores.append(store)
    # RAISE(ROLLBACK) rolls back the whole transaction, savepoints included (as SQLITE_FULL or an
    # I/O error may): the operations before it in the batch are lost too, so their callers must
    # not be told they succeeded.
    poison_applied_versions(path, "ROLLBACK")
    before, after = key_for("ord-before"), key_for("ord-after")
    poisoned = key_for(POISON_ORDER)

    results = await asyncio.gather(
        store.claim(before, "a", LEASE),
        store.record_outcome(poisoned, Outcome.APPLIED, b"x"),
        store.claim(after, "a", LEASE),
        return_exceptions=True,
    )

    assert trace.commits() == 0
    assert all(isinstance(result, StoreUnavailableError) for result in results), results
    assert delivery_row(path, before) is None
    assert delivery_row(path, poisoned) is None
    assert delivery_row(path, after) is None
    # No transaction was left open: the store goes on.
    assert await store.claim(before, "a", LEASE) == Claim(ClaimStatus.PROCEED)
    assert delivery_row(path, before) == ("claimed", "a", None, None)


# --- 3. cancellation -----------------------------------------------------------------------------


async def test_cancelled_callers_leave_their_operation_whole_or_absent_and_others_unaffected(
    path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[SqliteStore]
) -> None:
    store, trace = await open_traced(path, monkeypatch)
    stores.append(store)
    loop = asyncio.get_running_loop()
    mid_operation = asyncio.Event()
    resume = threading.Event()
    victim_mid = key_for("ord-mid", 2)  # cancelled while its record_outcome is half done

    def hold_in_the_middle(sql: str) -> None:
        # On the store's thread: the victim's delivery row is written, its applied version not yet.
        if sql.startswith("INSERT INTO deliveries") and victim_mid.event_id in sql:
            trace.hooks.remove(hold_in_the_middle)
            loop.call_soon_threadsafe(mid_operation.set)
            assert resume.wait(10), "the test never let the store's thread go on"

    trace.hooks.append(hold_in_the_middle)
    first_batch = [key_for(f"ord-a{n}", 2) for n in range(5)]
    victim_later = key_for("ord-later", 2)  # in the running batch, after the held operation
    second_batch = [key_for(f"ord-b{n}", 2) for n in range(5)]
    victim_queued = key_for("ord-queued", 2)  # in the next batch, cancelled before it starts

    def record(key: DeliveryKey) -> asyncio.Task[None]:
        return asyncio.ensure_future(store.record_outcome(key, Outcome.APPLIED, key.event_id.encode()))

    running = [record(k) for k in first_batch[:2]]
    mid_task = record(victim_mid)
    later_task = record(victim_later)
    running += [record(k) for k in first_batch[2:]]
    await mid_operation.wait()
    queued = [record(k) for k in second_batch[:3]]
    queued_task = record(victim_queued)
    queued += [record(k) for k in second_batch[3:]]
    await asyncio.sleep(0)  # let the new calls queue their operations
    for task in (mid_task, later_task, queued_task):
        task.cancel()
    for task in (mid_task, later_task, queued_task):
        with pytest.raises(asyncio.CancelledError):
            await task
    resume.set()

    assert await asyncio.gather(*running, *queued) == [None] * 10
    assert trace.commits() == 2

    # The store goes on after the cancellations.
    after = key_for("ord-after", 1)
    assert await store.claim(after, "a", LEASE) == Claim(ClaimStatus.PROCEED)
    await store.record_outcome(after, Outcome.APPLIED, b"after")
    await store.close()

    restarted = SqliteStore(path)
    stores.append(restarted)
    await restarted.open()
    for key in [*first_batch, *second_batch]:
        assert delivery_row(path, key) == ("done", None, "applied", key.event_id.encode())
        assert applied_version(path, key.order_number) == 2
    for victim in (victim_mid, victim_later, victim_queued):
        row, version = delivery_row(path, victim), applied_version(path, victim.order_number)
        whole = row == ("done", None, "applied", victim.event_id.encode()) and version == 2
        absent = row is None and version is None
        assert whole or absent, (victim, row, version)
    # Once an operation started it runs to its end (and is committed with its batch); one whose
    # batch had not started is skipped.
    assert delivery_row(path, victim_mid) is not None
    assert delivery_row(path, victim_queued) is None
    assert await restarted.claim(after, "b", LEASE) == Claim(ClaimStatus.UNREPORTED, result=b"after")


# --- 4. durability: an answer means committed -----------------------------------------------------


async def test_every_answer_comes_after_its_commit(path: Path, stores: list[SqliteStore]) -> None:
    store = SqliteStore(path)
    stores.append(store)
    await store.open()
    keys = [key_for(f"ord-{n}", 1) for n in range(60)]
    checked: list[DeliveryKey] = []

    async def claim_then_look(key: DeliveryKey) -> None:
        await store.claim(key, "a", LEASE)
        # No await in between: another reader of the file sees it the moment the caller is told.
        assert delivery_row(path, key) == ("claimed", "a", None, None)
        await store.record_outcome(key, Outcome.REJECTED, b"rejected")
        assert delivery_row(path, key) == ("done", "a", "rejected", b"rejected")
        checked.append(key)

    await asyncio.gather(*(claim_then_look(key) for key in keys))
    await store.mark_reported(keys[:30])
    assert checked and len(checked) == len(keys)

    # A second store on the file, while the first is still open, then again after it closed.
    other = SqliteStore(path)
    stores.append(other)
    await other.open()
    for key in keys:
        expected = ClaimStatus.DUPLICATE if key in keys[:30] else ClaimStatus.UNREPORTED
        assert (await other.claim(key, "b", LEASE)).status is expected
    await store.close()
    await other.close()
    reopened = SqliteStore(path)
    stores.append(reopened)
    await reopened.open()
    assert await reopened.claim(keys[-1], "b", LEASE) == Claim(ClaimStatus.UNREPORTED, result=b"rejected")
    assert await reopened.claim(keys[0], "b", LEASE) == Claim(ClaimStatus.DUPLICATE)


# --- 5. the watchdog -----------------------------------------------------------------------------


class LockHolder:
    """A plain sqlite3 connection on a thread of its own holding `BEGIN EXCLUSIVE` on the file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._locked = threading.Event()
        self._release = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, name="lock-holder", daemon=True)

    def _hold(self) -> None:
        try:
            connection = _real_connect(self._path, isolation_level=None)
            try:
                connection.execute("BEGIN EXCLUSIVE")
                self._locked.set()
                self._release.wait(30)
                connection.execute("ROLLBACK")
            finally:
                connection.close()
        except BaseException as exc:
            self._error = exc
            self._locked.set()

    async def __aenter__(self) -> LockHolder:
        self._thread.start()
        assert await asyncio.to_thread(self._locked.wait, 5)
        assert self._error is None, self._error
        return self

    async def release(self) -> None:
        self._release.set()
        await asyncio.to_thread(self._thread.join, 5)
        assert not self._thread.is_alive()
        assert self._error is None, self._error

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()


async def test_a_locked_file_times_out_each_caller_at_its_own_deadline_then_recovers(
    path: Path, stores: list[SqliteStore]
) -> None:
    timeout_s, stagger_s = 0.5, 0.15
    store = SqliteStore(path, timeout_s=timeout_s)
    stores.append(store)
    await store.open()
    loop = asyncio.get_running_loop()

    async def timed(call: Awaitable[Any]) -> tuple[float, BaseException | None]:
        started = loop.time()
        try:
            await call
        except BaseException as exc:
            return loop.time() - started, exc
        return loop.time() - started, None

    first = [key_for(f"ord-first-{n}") for n in range(3)]
    second = [key_for(f"ord-second-{n}") for n in range(3)]
    async with LockHolder(path) as lock:
        early = [asyncio.ensure_future(timed(store.claim(k, "a", LEASE))) for k in first]
        await asyncio.sleep(stagger_s)  # not a wait for a condition: it staggers the deadlines
        late = [asyncio.ensure_future(timed(store.claim(k, "a", LEASE))) for k in second]
        late.append(asyncio.ensure_future(timed(store.check_event("evt-late", "fp"))))
        outcomes = await asyncio.gather(*early, *late)
        await lock.release()

    for elapsed, error in outcomes:
        assert isinstance(error, StoreUnavailableError), error
        # Each caller has its own deadline: not cut short at an earlier caller's one, not left to
        # wait behind the batch in front of it (that would be about 2 * timeout_s - stagger_s).
        assert timeout_s - 0.05 <= elapsed < timeout_s + 0.25, outcomes
    # The callers that timed out were not applied behind their backs.
    started = time.monotonic()
    for key in [*first, *second]:
        assert await store.claim(key, "b", LEASE) == Claim(ClaimStatus.PROCEED)
    assert await store.check_event("evt-late", "fp-other") is True
    assert time.monotonic() - started < 2
    await store.close()
    reopened = SqliteStore(path)
    stores.append(reopened)
    await reopened.open()
    assert await reopened.claim(first[0], "a", LEASE) == Claim(ClaimStatus.BUSY)
