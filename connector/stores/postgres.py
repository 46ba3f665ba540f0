"""The PostgreSQL store (`postgresql://…`, `postgres://…`), for replicas that share a database.

An asyncpg pool; each operation is one transaction on one pooled connection. A claim is an
`INSERT … ON CONFLICT DO UPDATE … WHERE <takeover allowed>`, which locks the delivery's row whether
or not it updates it, so the answer is decided under that lock. Lease times come from the server's
clock. Tables (prefixed `order_sync_`, in `schema` when given) are created by `open` if missing,
under an advisory lock, so replicas starting together do not race on the DDL; when they all exist
no DDL runs at all, so the connector's role needs no CREATE privilege after the first start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from connector.errors import StoreUnavailableError
from connector.models import Outcome, Platform
from connector.observability.redaction import Redactor
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

_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class PostgresStore(BatchedStore):
    def __init__(
        self, url: str, *, timeout_s: float = 5.0, schema: str | None = None, pool_size: int = 10
    ) -> None:
        parts = urlsplit(url)
        self._url = url
        self._where = f"postgresql at {parts.netloc.rpartition('@')[2] or 'localhost'}{parts.path}"
        self._redactor = Redactor([parts.password] if parts.password else [])
        self._timeout_s = timeout_s
        self._schema = schema
        self._pool_size = pool_size
        self._pool: Any = None
        qualify = f"{_quote(schema)}." if schema else ""
        self._deliveries = f"{qualify}order_sync_deliveries"
        self._events = f"{qualify}order_sync_events"
        self._versions = f"{qualify}order_sync_applied_versions"
        self._parked = f"{qualify}order_sync_parked_deliveries"

    async def open(self) -> None:
        if self._pool is not None:
            return
        async with self._boundary("open"):
            pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._timeout_s,
                command_timeout=self._timeout_s,
                server_settings={"application_name": "order-sync"},
            )
            try:
                async with pool.acquire() as conn:
                    await self._create_tables(conn)
            except BaseException:
                pool.terminate()
                raise
            self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await pool.close()
        except (TimeoutError, *_ERRORS) as exc:
            log.warning("closing the store (%s) did not finish cleanly: %s", self._where, exc)
            pool.terminate()

    async def ping(self) -> None:
        async with self._connection("ping") as conn:
            await conn.fetchval("SELECT 1")

    async def check_event(self, event_id: str, fingerprint: str) -> bool:
        async with self._connection("check_event") as conn:
            while True:
                inserted = await conn.fetchval(
                    f"INSERT INTO {self._events} (event_id, fingerprint, seen_at) "
                    "VALUES ($1, $2, clock_timestamp()) ON CONFLICT (event_id) DO NOTHING RETURNING true",
                    event_id,
                    fingerprint,
                )
                if inserted:
                    return True
                known = await conn.fetchval(
                    f"SELECT fingerprint FROM {self._events} WHERE event_id = $1", event_id
                )
                # None only when a purge removed it between the two statements: then it is new again.
                if known is not None:
                    return bool(known == fingerprint)

    async def check_events(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        """Two statements for the batch: the first fingerprint of each new id inserted (the first in
        list order, as one after another would; rows in id order, so replicas lock them alike), then
        what is stored for every id asked about."""
        if not items:
            return []
        async with self._connection("check_event") as conn:
            await conn.execute(
                f"""
                INSERT INTO {self._events} (event_id, fingerprint, seen_at)
                SELECT event_id, fingerprint, clock_timestamp()
                FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS i(event_id, fingerprint, n)
                ORDER BY event_id, n
                ON CONFLICT (event_id) DO NOTHING
                """,
                [event_id for event_id, _ in items],
                [fingerprint for _, fingerprint in items],
            )
            rows = await conn.fetch(
                f"SELECT event_id, fingerprint FROM {self._events} WHERE event_id = ANY($1::text[])",
                list({event_id for event_id, _ in items}),
            )
        stored = {row["event_id"]: row["fingerprint"] for row in rows}
        answers = []
        for event_id, fingerprint in items:
            known = stored.get(event_id)
            # None only when a purge removed it in between: then it is new again.
            answers.append(
                known == fingerprint if known is not None else await self.check_event(event_id, fingerprint)
            )
        return answers

    async def claim_many(self, keys: Sequence[DeliveryKey], owner: str, lease_s: float) -> list[Claim]:
        """One transaction and two round trips for the batch: every claim attempted (one statement
        per delivery, pipelined), then what holds the refused ones. Deliveries are claimed in key
        order, so replicas claiming overlapping batches lock rows alike; claims of different
        deliveries do not read each other, so the answers are those of one claim after another."""
        if not keys:
            return []
        ordered = sorted({(key.event_id, key.platform.value): key for key in keys}.items())
        async with self._connection("claim") as conn, conn.transaction():
            rows = await conn.fetchmany(
                f"""
                INSERT INTO {self._deliveries} AS d (event_id, platform, state, owner, claimed_at, touched_at)
                VALUES ($1, $2, 'claimed', $3, clock_timestamp(), clock_timestamp())
                ON CONFLICT (event_id, platform) DO UPDATE
                SET owner = EXCLUDED.owner, claimed_at = EXCLUDED.claimed_at, touched_at = EXCLUDED.touched_at
                WHERE d.state = 'claimed'
                  AND (d.owner = EXCLUDED.owner
                       OR d.claimed_at <= clock_timestamp() - make_interval(secs => $4::float8))
                RETURNING d.event_id, d.platform,
                    (SELECT version FROM {self._versions} v WHERE v.order_number = $5 AND v.platform = $6)
                    AS applied
                """,
                [(e, p, owner, float(lease_s), key.order_number, key.target) for (e, p), key in ordered],
            )
            claimed = {(row["event_id"], row["platform"]): row["applied"] for row in rows}
            refused = [record for record, _ in ordered if record not in claimed]
            held: dict[tuple[str, str], Any] = {}
            if refused:
                # The refused rows are locked by the statements above, so this reads them as they stand.
                held = {
                    (row["event_id"], row["platform"]): row
                    for row in await conn.fetch(
                        f"""
                        SELECT d.event_id, d.platform, d.state, d.result FROM {self._deliveries} AS d
                        JOIN unnest($1::text[], $2::text[]) AS k(event_id, platform)
                          ON d.event_id = k.event_id AND d.platform = k.platform
                        """,
                        [e for e, _ in refused],
                        [p for _, p in refused],
                    )
                }
        return [_claim_answer(key, claimed, held) for key in keys]

    async def record_outcomes(
        self, items: Sequence[tuple[DeliveryKey, Outcome, bytes]], *, reported: bool = False
    ) -> None:
        """One transaction for the batch; each statement runs over the items in list order (the
        applied versions sorted, as only the highest counts, so that replicas lock rows alike)."""
        if not items:
            return
        state = DeliveryState.REPORTED.value if reported else DeliveryState.DONE.value
        # Rows locked in key order, as claims lock them, so that replicas never wait on each other in
        # a circle (a stable sort: outcomes of one delivery keep their list order, the last wins).
        items = sorted(items, key=lambda item: (item[0].event_id, item[0].platform.value))
        versions = sorted(
            {
                (key.order_number, key.target, key.version)
                for key, outcome, _ in items
                if outcome is Outcome.APPLIED
            }
        )
        async with self._connection("record_outcome") as conn, conn.transaction():
            await conn.executemany(
                f"""
                INSERT INTO {self._deliveries} AS d
                    (event_id, platform, state, owner, claimed_at, outcome, result, touched_at)
                VALUES ($1, $2, $5, NULL, clock_timestamp(), $3, $4, clock_timestamp())
                ON CONFLICT (event_id, platform) DO UPDATE
                SET state = CASE WHEN d.state = 'reported' THEN 'reported' ELSE EXCLUDED.state END,
                    result = CASE WHEN d.state = 'reported' THEN NULL ELSE EXCLUDED.result END,
                    outcome = EXCLUDED.outcome,
                    touched_at = EXCLUDED.touched_at
                """,
                [
                    (key.event_id, key.platform.value, outcome.value, None if reported else result, state)
                    for key, outcome, result in items
                ],
            )
            if versions:
                await conn.executemany(
                    f"""
                    INSERT INTO {self._versions} AS v (order_number, platform, version) VALUES ($1, $2, $3)
                    ON CONFLICT (order_number, platform) DO UPDATE SET version = EXCLUDED.version
                    WHERE v.version < EXCLUDED.version
                    """,
                    versions,
                )

    async def order_records(self, order_number: str, event_ids: Sequence[str]) -> OrderRecords:
        async with self._connection("order_records") as conn:
            applied = await conn.fetch(
                f"SELECT platform, version FROM {self._versions} WHERE order_number = $1", order_number
            )
            states = await conn.fetch(
                f"SELECT event_id, platform, state FROM {self._deliveries} WHERE event_id = ANY($1::text[])",
                list(event_ids),
            )
            parked = await conn.fetch(
                f"SELECT event_id, platform FROM {self._parked} WHERE event_id = ANY($1::text[])",
                list(event_ids),
            )
        return OrderRecords(
            {str(r["platform"]): int(r["version"]) for r in applied},
            {(r["event_id"], Platform(r["platform"])): DeliveryState(r["state"]) for r in states},
            frozenset((r["event_id"], Platform(r["platform"])) for r in parked),
        )

    async def mark_reported(self, keys: list[DeliveryKey]) -> None:
        if not keys:
            return
        pairs = sorted({(key.event_id, key.platform.value) for key in keys})
        async with self._connection("mark_reported") as conn, conn.transaction():
            # Rows locked first, in key order, as claims and outcomes lock them: an UPDATE ... FROM
            # locks in whatever order its plan visits them, and could wait in a circle with a replica.
            await _lock_in_key_order(conn, self._deliveries, pairs)
            await conn.execute(
                f"""
                UPDATE {self._deliveries} AS d
                SET state = 'reported', result = NULL, touched_at = clock_timestamp()
                FROM unnest($1::text[], $2::text[]) AS k(event_id, platform)
                WHERE d.event_id = k.event_id AND d.platform = k.platform
                """,
                [event_id for event_id, _ in pairs],
                [platform for _, platform in pairs],
            )

    async def park(self, items: Sequence[ParkedDelivery]) -> None:
        """One statement for the batch, rows inserted in key order (so replicas lock them alike) and,
        for a delivery in the batch twice, the first in list order kept, as one after another would."""
        if not items:
            return
        async with self._connection("park") as conn:
            await conn.execute(
                f"""
                INSERT INTO {self._parked}
                    (event_id, platform, connection, topic, partition, "offset", value, traceparent)
                SELECT event_id, platform, connection, topic, partition, "offset", value, traceparent
                FROM unnest(
                    $1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[],
                    $7::bytea[], $8::text[]
                ) WITH ORDINALITY
                    AS i(event_id, platform, connection, topic, partition, "offset", value, traceparent, n)
                ORDER BY event_id, platform, n
                ON CONFLICT (event_id, platform) DO NOTHING
                """,
                [item.event_id for item in items],
                [item.platform.value for item in items],
                [item.connection for item in items],
                [item.topic for item in items],
                [item.partition for item in items],
                [item.offset for item in items],
                [item.value for item in items],
                [item.traceparent for item in items],
            )

    async def parked(
        self, platform: Platform, connection: str, partitions: Sequence[int], limit: int
    ) -> list[ParkedDelivery]:
        """Each partition read on its own down the position index (at most `limit` rows apiece), and
        only those merged: an `= ANY(...)` over several partitions would not come out of the index in
        order, so the server would have to read and sort every parked row of the connection."""
        wanted = sorted(set(partitions))
        if not wanted or limit <= 0:
            return []
        async with self._connection("parked") as conn:
            rows = await conn.fetch(
                f"""
                SELECT p.* FROM unnest($3::int[]) AS k(partition)
                CROSS JOIN LATERAL (
                    SELECT event_id, platform, connection, topic, partition, "offset", value, traceparent
                    FROM {self._parked} AS d
                    WHERE d.platform = $1 AND d.connection = $2 AND d.partition = k.partition
                    ORDER BY d."offset"
                    LIMIT $4
                ) AS p
                ORDER BY p.partition, p."offset"
                LIMIT $4
                """,
                platform.value,
                connection,
                wanted,
                limit,
            )
        return [
            ParkedDelivery(
                row["event_id"],
                Platform(row["platform"]),
                row["connection"],
                row["topic"],
                row["partition"],
                row["offset"],
                row["value"],
                row["traceparent"],
            )
            for row in rows
        ]

    async def unpark(self, items: Sequence[ParkedDelivery]) -> None:
        if not items:
            return
        pairs = sorted({(item.event_id, item.platform.value) for item in items})
        async with self._connection("unpark") as conn, conn.transaction():
            # Two replicas unparking overlapping batches (during a rebalance) lock alike.
            await _lock_in_key_order(conn, self._parked, pairs)
            await conn.execute(
                f"""
                DELETE FROM {self._parked} AS d
                USING unnest($1::text[], $2::text[]) AS k(event_id, platform)
                WHERE d.event_id = k.event_id AND d.platform = k.platform
                """,
                [event_id for event_id, _ in pairs],
                [platform for _, platform in pairs],
            )

    async def parked_counts(
        self, platform: Platform, partitions: Sequence[int]
    ) -> dict[tuple[str, int], int]:
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        async with self._connection("parked_counts") as conn:
            rows = await conn.fetch(
                f"""
                SELECT connection, partition, count(*) AS parked FROM {self._parked}
                WHERE platform = $1 AND partition = ANY($2::int[])
                GROUP BY connection, partition
                """,
                platform.value,
                wanted,
            )
        return {(row["connection"], row["partition"]): int(row["parked"]) for row in rows}

    async def release(self, key: DeliveryKey, owner: str) -> None:
        async with self._connection("release") as conn:
            await conn.execute(
                f"DELETE FROM {self._deliveries} "
                "WHERE event_id = $1 AND platform = $2 AND state = 'claimed' AND owner = $3",
                key.event_id,
                key.platform.value,
                owner,
            )

    async def purge(self, older_than: datetime, limit: int) -> int:
        async with self._connection("purge") as conn:
            # SKIP LOCKED: a row another replica is working on is not old, and is not waited for.
            status = await conn.execute(
                f"""
                WITH doomed AS (
                    SELECT event_id, platform FROM {self._deliveries}
                    WHERE touched_at < $1 ORDER BY touched_at LIMIT $2 FOR UPDATE SKIP LOCKED
                )
                DELETE FROM {self._deliveries} AS d USING doomed
                WHERE d.event_id = doomed.event_id AND d.platform = doomed.platform
                """,
                older_than,
                limit,
            )
            removed = int(status.split()[-1])
            if removed < limit:
                status = await conn.execute(
                    f"""
                    WITH doomed AS (
                        SELECT event_id FROM {self._events}
                        WHERE seen_at < $1 ORDER BY seen_at LIMIT $2 FOR UPDATE SKIP LOCKED
                    )
                    DELETE FROM {self._events} AS e USING doomed WHERE e.event_id = doomed.event_id
                    """,
                    older_than,
                    limit - removed,
                )
                removed += int(status.split()[-1])
        return removed

    async def _create_tables(self, conn: Any) -> None:
        # A database from before parking lacks only its table: the DDL below adds it (and its index).
        tables = [self._deliveries, self._events, self._versions, self._parked]
        if await conn.fetchval(
            "SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest($1::text[]) AS name", tables
        ):
            return
        schema = f"CREATE SCHEMA IF NOT EXISTS {_quote(self._schema)};" if self._schema else ""
        async with conn.transaction():
            # Serializes table creation between replicas starting at once (CREATE … IF NOT EXISTS can race).
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('order-sync idempotency ddl', 0))"
            )
            await conn.execute(
                f"""
                {schema}
                CREATE TABLE IF NOT EXISTS {self._deliveries} (
                    event_id   text        NOT NULL,
                    platform   text        NOT NULL,
                    state      text        NOT NULL CHECK (state IN ('claimed', 'done', 'reported')),
                    owner      text,
                    claimed_at timestamptz NOT NULL,
                    outcome    text,
                    result     bytea,
                    touched_at timestamptz NOT NULL,
                    PRIMARY KEY (event_id, platform)
                );
                CREATE INDEX IF NOT EXISTS order_sync_deliveries_touched_at
                    ON {self._deliveries} (touched_at);
                CREATE TABLE IF NOT EXISTS {self._events} (
                    event_id    text        PRIMARY KEY,
                    fingerprint text        NOT NULL,
                    seen_at     timestamptz NOT NULL
                );
                CREATE INDEX IF NOT EXISTS order_sync_events_seen_at ON {self._events} (seen_at);
                CREATE TABLE IF NOT EXISTS {self._versions} (
                    order_number text   NOT NULL,
                    platform     text   NOT NULL,
                    version      bigint NOT NULL,
                    PRIMARY KEY (order_number, platform)
                );
                CREATE TABLE IF NOT EXISTS {self._parked} (
                    event_id    text    NOT NULL,
                    platform    text    NOT NULL,
                    connection  text    NOT NULL,
                    topic       text    NOT NULL,
                    partition   integer NOT NULL,
                    "offset"    bigint  NOT NULL,
                    value       bytea   NOT NULL,
                    traceparent text,
                    PRIMARY KEY (event_id, platform)
                );
                CREATE INDEX IF NOT EXISTS order_sync_parked_deliveries_position
                    ON {self._parked} (platform, connection, partition, "offset");
                """
            )

    def _boundary(self, operation: str) -> contextlib.AbstractAsyncContextManager[None]:
        return store_boundary(self._where, operation, self._timeout_s, _ERRORS, self._redactor.redact)

    @contextlib.asynccontextmanager
    async def _connection(self, operation: str) -> AsyncIterator[Any]:
        async with self._boundary(operation):
            if self._pool is None:
                raise StoreUnavailableError(f"{self._where}: {operation}: the store is not open")
            async with self._pool.acquire() as conn:
                yield conn


async def _lock_in_key_order(conn: Any, table: str, pairs: list[tuple[str, str]]) -> None:
    """Lock the rows of these (event_id, platform) keys in key order, within the caller's transaction."""
    await conn.execute(
        f"""
        SELECT 1 FROM {table} AS d
        JOIN unnest($1::text[], $2::text[]) AS k(event_id, platform)
          ON d.event_id = k.event_id AND d.platform = k.platform
        ORDER BY d.event_id, d.platform
        FOR UPDATE OF d
        """,
        [event_id for event_id, _ in pairs],
        [platform for _, platform in pairs],
    )


def _claim_answer(
    key: DeliveryKey, claimed: dict[tuple[str, str], Any], held: dict[tuple[str, str], Any]
) -> Claim:
    record = (key.event_id, key.platform.value)
    if record in claimed:
        applied = claimed[record]
        if applied is not None and key.version <= applied:
            return Claim(ClaimStatus.STALE, applied_version=int(applied))
        return Claim(ClaimStatus.PROCEED)
    row = held.get(record)
    if row is None or row["state"] == DeliveryState.CLAIMED:
        return Claim(ClaimStatus.BUSY)
    if row["state"] == DeliveryState.REPORTED:
        return Claim(ClaimStatus.DUPLICATE)
    return Claim(ClaimStatus.UNREPORTED, result=row["result"])
