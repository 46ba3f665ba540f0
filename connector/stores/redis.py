"""The Redis store (`redis://…`, `rediss://…` for TLS), for replicas that share a Redis primary.

Every operation that reads and then writes is one Lua script, so it is atomic on the server; lease
times come from the server's clock (`TIME`). Keys, under a prefix:

    {prefix}:delivery:{event_id}:{platform}    hash: state, owner, claimed_at (µs), outcome, result
    {prefix}:event:{event_id}                  string: the content fingerprint
    {prefix}:applied:{order_number}:{platform} string: the highest applied version (decimal)
    {prefix}:parked:{event_id}:{platform}      hash: a parked delivery (connection, topic, partition,
                                               offset, value, and traceparent when it has one)
    {prefix}:parked-queue:{platform}:{connection}:{partition}
                                               sorted set: the event ids parked there, scored by offset
    {prefix}:parked-queues:{platform}          set: the platform's parked-queue keys that hold any

The platform is always the last part and never contains ':', so keys cannot collide; in a
parked-queue key the partition is last instead, and a connection name never contains ':' either.

Retention is Redis's own: every write sets the delivery or event key to expire `retention_s` after
it, which is exactly "delete what was last touched longer ago than the retention". `purge` therefore
has nothing to do and returns 0. Applied versions never expire, nor do parked deliveries (work not
yet done: they go only by `unpark`). Configure the server with
`maxmemory-policy noeviction`: an evicted delivery key would let a delivery be sent twice.

Claim and record touch two keys (the delivery and the applied version), so Redis Cluster is not
supported; use a single primary (with replicas or Sentinel for failover).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

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

DEFAULT_RETENTION_S = 168 * 3600.0

# Versions are compared as decimal strings: Lua numbers are doubles, exact only up to 2^53.
_COMPARE = """
local function compare(a, b)
  local a_negative, b_negative = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if a_negative ~= b_negative then return a_negative and -1 or 1 end
  local order
  if #a ~= #b then order = #a < #b and -1 or 1
  elseif a == b then order = 0
  else order = a < b and -1 or 1 end
  if a_negative then order = -order end
  return order
end
"""

# KEYS: delivery, applied version. ARGV: owner, lease (µs), retention (ms), version.
_CLAIM = (
    _COMPARE
    + """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local record = redis.call('HMGET', KEYS[1], 'state', 'owner', 'claimed_at', 'result')
local state = record[1]
if state == 'reported' then return {'duplicate'} end
if state == 'done' then return {'unreported', record[4]} end
if state == 'claimed' and record[2] ~= ARGV[1] and now - tonumber(record[3]) < tonumber(ARGV[2]) then
  return {'busy'}
end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'owner', ARGV[1], 'claimed_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local applied = redis.call('GET', KEYS[2])
if applied and compare(ARGV[4], applied) <= 0 then return {'stale', applied} end
return {'proceed'}
"""
)

# KEYS: delivery, applied version.
# ARGV: outcome, result, retention (ms), version, '1' when applied, '1' when already reported.
_RECORD = (
    _COMPARE
    + """
if redis.call('HGET', KEYS[1], 'state') == 'reported' then
  redis.call('HSET', KEYS[1], 'outcome', ARGV[1])
elseif ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'reported', 'outcome', ARGV[1])
  redis.call('HDEL', KEYS[1], 'result')
else
  redis.call('HSET', KEYS[1], 'state', 'done', 'outcome', ARGV[1], 'result', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[5] == '1' then
  local applied = redis.call('GET', KEYS[2])
  if not applied or compare(ARGV[4], applied) > 0 then redis.call('SET', KEYS[2], ARGV[4]) end
end
return 1
"""
)

# KEYS: deliveries. ARGV: retention (ms).
_MARK_REPORTED = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'state', 'reported')
    redis.call('HDEL', key, 'result')
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 1
"""

# KEYS: delivery. ARGV: owner.
_RELEASE = """
local record = redis.call('HMGET', KEYS[1], 'state', 'owner')
if record[1] == 'claimed' and record[2] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: event. ARGV: fingerprint, retention (ms).
_CHECK_EVENT = """
local known = redis.call('GET', KEYS[1])
if not known then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if known == ARGV[1] then return 1 end
return 0
"""

# KEYS: parked delivery, its parked-queue, the platform's parked-queues.
# ARGV: event id, offset, connection, topic, partition, value, traceparent, '1' when it has one.
_PARK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'connection', ARGV[3], 'topic', ARGV[4], 'partition', ARGV[5],
  'offset', ARGV[2], 'value', ARGV[6])
if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'traceparent', ARGV[7]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], KEYS[2])
return 1
"""

# KEYS: parked delivery, the platform's parked-queues. ARGV: event id, the platform's parked-queue
# key up to the connection. The queue is the one the delivery was parked in, read from its record
# (the one key not passed in KEYS, as only the record knows it; Redis Cluster is unsupported anyway).
_UNPARK = """
local record = redis.call('HMGET', KEYS[1], 'connection', 'partition')
if not record[1] then return 0 end
local queue = ARGV[2] .. record[1] .. ':' .. record[2]
redis.call('DEL', KEYS[1])
redis.call('ZREM', queue, ARGV[1])
if redis.call('EXISTS', queue) == 0 then redis.call('SREM', KEYS[2], queue) end
return 1
"""

#: Keys per `mark_reported` script call, so one call never holds the server for long.
_REPORT_CHUNK = 500


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _claim_from(answer: Any) -> Claim:
    status = ClaimStatus(_text(answer[0]))
    if status is ClaimStatus.UNREPORTED:
        return Claim(status, result=answer[1] if len(answer) > 1 else None)
    if status is ClaimStatus.STALE:
        return Claim(status, applied_version=int(_text(answer[1])))
    return Claim(status)


class RedisStore(BatchedStore):
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retention_s: float = DEFAULT_RETENTION_S,
        prefix: str = "order-sync",
        pool_size: int = 16,
    ) -> None:
        parts = urlsplit(url)
        self._where = f"redis at {parts.netloc.rpartition('@')[2] or 'localhost'}{parts.path}"
        self._redactor = Redactor([parts.password] if parts.password else [])
        self._timeout_s = timeout_s
        self._retention_ms = max(1, int(retention_s * 1000))
        self._prefix = prefix
        # Waits for a free connection instead of failing when all are busy; one immediate retry on a
        # dropped connection, since a pooled connection is found dead only when next used (server
        # restart). Every script is safe to run twice.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._client = aioredis.Redis.from_pool(pool)
        self._claim = self._client.register_script(_CLAIM)
        self._record = self._client.register_script(_RECORD)
        self._mark_reported = self._client.register_script(_MARK_REPORTED)
        self._release = self._client.register_script(_RELEASE)
        self._check_event = self._client.register_script(_CHECK_EVENT)
        self._park = self._client.register_script(_PARK)
        self._unpark = self._client.register_script(_UNPARK)

    async def open(self) -> None:
        async with self._boundary("open"):
            await self._client.ping()
            # Loads the scripts now, so a server that refuses Lua fails at start-up, not mid-stream.
            for script in (
                self._claim,
                self._record,
                self._mark_reported,
                self._release,
                self._check_event,
                self._park,
                self._unpark,
            ):
                await self._client.script_load(script.script)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError) as exc:
            message = self._redactor.redact(str(exc))
            log.warning("closing the store (%s) failed: %s", self._where, message)

    async def ping(self) -> None:
        async with self._boundary("ping"):
            await self._client.ping()

    async def check_events(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        answers = await self._run_many(
            "check_event",
            self._check_event,
            [([self._event_key(e)], [fingerprint, self._retention_ms]) for e, fingerprint in items],
        )
        return [answer == 1 for answer in answers]

    async def claim_many(self, keys: Sequence[DeliveryKey], owner: str, lease_s: float) -> list[Claim]:
        answers = await self._run_many(
            "claim",
            self._claim,
            [
                (
                    [self._delivery_key(key), self._applied_key(key)],
                    [owner, int(lease_s * 1_000_000), self._retention_ms, str(key.version)],
                )
                for key in keys
            ],
        )
        return [_claim_from(answer) for answer in answers]

    async def record_outcomes(
        self, items: Sequence[tuple[DeliveryKey, Outcome, bytes]], *, reported: bool = False
    ) -> None:
        await self._run_many(
            "record_outcome",
            self._record,
            [
                (
                    [self._delivery_key(key), self._applied_key(key)],
                    [
                        outcome.value,
                        b"" if reported else result,
                        self._retention_ms,
                        str(key.version),
                        int(outcome is Outcome.APPLIED),
                        int(reported),
                    ],
                )
                for key, outcome, result in items
            ],
        )

    async def mark_reported(self, keys: list[DeliveryKey]) -> None:
        names = [self._delivery_key(key) for key in keys]
        for start in range(0, len(names), _REPORT_CHUNK):
            chunk = names[start : start + _REPORT_CHUNK]
            await self._run("mark_reported", self._mark_reported, chunk, [self._retention_ms])

    async def order_records(self, order_number: str, event_ids: Sequence[str]) -> OrderRecords:
        deliveries = [(e, p) for e in dict.fromkeys(event_ids) for p in Platform]
        applied_prefix = f"{self._prefix}:applied:{order_number}:"
        async with self._boundary("order_records"):
            # The order's targets are not known here (connections come and go): one scan finds them.
            targets = [
                _text(name)[len(applied_prefix) :]
                async for name in self._client.scan_iter(match=_glob_escape(applied_prefix) + "*", count=100)
            ]
            pipe = self._client.pipeline(transaction=False)
            for target in targets:
                pipe.get(applied_prefix + target)
            for event_id, platform in deliveries:
                pipe.hget(f"{self._prefix}:delivery:{event_id}:{platform.value}", "state")
            for event_id, platform in deliveries:
                pipe.exists(self._parked_key(event_id, platform))
            answers = await pipe.execute()
        versions = answers[: len(targets)]
        states = answers[len(targets) : len(targets) + len(deliveries)]
        parked = answers[len(targets) + len(deliveries) :]
        return OrderRecords(
            {t: int(_text(v)) for t, v in zip(targets, versions, strict=True) if v is not None},
            {d: DeliveryState(_text(s)) for d, s in zip(deliveries, states, strict=True) if s is not None},
            frozenset(d for d, found in zip(deliveries, parked, strict=True) if found),
        )

    async def park(self, items: Sequence[ParkedDelivery]) -> None:
        await self._run_many(
            "park",
            self._park,
            [
                (
                    [
                        self._parked_key(item.event_id, item.platform),
                        self._queue_key(item.platform, item.connection, item.partition),
                        self._queues_key(item.platform),
                    ],
                    [
                        item.event_id,
                        item.offset,
                        item.connection,
                        item.topic,
                        item.partition,
                        item.value,
                        item.traceparent or "",
                        int(item.traceparent is not None),
                    ],
                )
                for item in items
            ],
        )

    async def parked(
        self, platform: Platform, connection: str, partitions: Sequence[int], limit: int
    ) -> list[ParkedDelivery]:
        """Two round trips: the first `limit` event ids of each partition's queue, then the records
        of the first `limit` of them in (partition, offset) order. Scores are doubles, so offsets
        order exactly up to 2^53 (the offset returned is the record's own, exact)."""
        wanted = sorted(set(partitions))
        if not wanted or limit <= 0:
            return []
        async with self._boundary("parked"):
            pipe = self._client.pipeline(transaction=False)
            for partition in wanted:
                pipe.zrange(self._queue_key(platform, connection, partition), 0, limit - 1)
            queues = await pipe.execute()
            event_ids = [_text(e) for queue in queues for e in queue][:limit]
            if not event_ids:
                return []
            pipe = self._client.pipeline(transaction=False)
            for event_id in event_ids:
                pipe.hgetall(self._parked_key(event_id, platform))
            records = await pipe.execute()
        # A record gone in between was unparked meanwhile: it is no longer parked.
        return [
            _parked_from(event_id, platform, record)
            for event_id, record in zip(event_ids, records, strict=True)
            if record
        ]

    async def unpark(self, items: Sequence[ParkedDelivery]) -> None:
        await self._run_many(
            "unpark",
            self._unpark,
            [
                (
                    [self._parked_key(item.event_id, item.platform), self._queues_key(item.platform)],
                    [item.event_id, self._queue_prefix(item.platform)],
                )
                for item in items
            ],
        )

    async def parked_counts(
        self, platform: Platform, partitions: Sequence[int]
    ) -> dict[tuple[str, int], int]:
        """The platform's set of non-empty queues names them, so no SCAN of the keyspace is needed."""
        wanted = set(partitions)
        if not wanted:
            return {}
        start = len(self._queue_prefix(platform))
        async with self._boundary("parked_counts"):
            queues: list[tuple[str, str, int]] = []
            for name in await self._client.smembers(self._queues_key(platform)):
                connection, _, partition = _text(name)[start:].rpartition(":")
                if int(partition) in wanted:
                    queues.append((_text(name), connection, int(partition)))
            if not queues:
                return {}
            pipe = self._client.pipeline(transaction=False)
            for name, _, _ in queues:
                pipe.zcard(name)
            sizes = await pipe.execute()
        return {(c, p): int(n) for (_, c, p), n in zip(queues, sizes, strict=True) if n}

    async def release(self, key: DeliveryKey, owner: str) -> None:
        await self._run("release", self._release, [self._delivery_key(key)], [owner])

    async def purge(self, older_than: datetime, limit: int) -> int:
        """Nothing to do: delivery and event keys expire `retention_s` after they were last written."""
        return 0

    def _delivery_key(self, key: DeliveryKey) -> str:
        return f"{self._prefix}:delivery:{key.event_id}:{key.platform.value}"

    def _event_key(self, event_id: str) -> str:
        return f"{self._prefix}:event:{event_id}"

    def _applied_key(self, key: DeliveryKey) -> str:
        return f"{self._prefix}:applied:{key.order_number}:{key.target}"

    def _parked_key(self, event_id: str, platform: Platform) -> str:
        return f"{self._prefix}:parked:{event_id}:{platform.value}"

    def _queue_key(self, platform: Platform, connection: str, partition: int) -> str:
        return f"{self._queue_prefix(platform)}{connection}:{partition}"

    def _queue_prefix(self, platform: Platform) -> str:
        return f"{self._prefix}:parked-queue:{platform.value}:"

    def _queues_key(self, platform: Platform) -> str:
        return f"{self._prefix}:parked-queues:{platform.value}"

    async def _run(self, operation: str, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        async with self._boundary(operation):
            return await script(keys=keys, args=args)

    async def _run_many(
        self, operation: str, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """`script` once per call, in one round trip: a pipeline (no MULTI) runs them in list order,
        as if one after another; each script is atomic on its own, as alone."""
        if not calls:
            return []
        async with self._boundary(operation):
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            return list(await pipe.execute())

    def _boundary(self, operation: str) -> contextlib.AbstractAsyncContextManager[None]:
        return store_boundary(
            self._where, operation, self._timeout_s, (RedisError, OSError), self._redactor.redact
        )


def _parked_from(event_id: str, platform: Platform, record: dict[bytes, bytes]) -> ParkedDelivery:
    traceparent = record.get(b"traceparent")
    return ParkedDelivery(
        event_id,
        platform,
        _text(record[b"connection"]),
        _text(record[b"topic"]),
        int(record[b"partition"]),
        int(record[b"offset"]),
        record[b"value"],
        None if traceparent is None else _text(traceparent),
    )


def _glob_escape(text: str) -> str:
    """`text` matched literally in a Redis glob pattern (an order number may hold `*` or `[`)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
