"""`order-sync history ORDER_NUMBER`: what happened to one order, from Kafka and the store.

Reads, from `since` to the current end, only the partitions that can hold the order:

- the result topics and the DLQ are keyed by the order number by the connector itself (aiokafka's
  default partitioner, murmur2), so one partition each;
- the input topic is keyed by the OMS, whose partitioner is unknown: the `source.partition` headers
  of the order's results and DLQ copies name its input partition exactly; without them, the
  partitions that the common partitioners pick (murmur2, CRC-32, FNV-1a) are read, and only when
  the order is in none of them, every other partition. An order's records are taken to be in one
  input partition, as its per-order ordering already requires.

The start offsets come from offsets-for-times; records older than `since` are skipped all the same
(a broker that cannot look up times answers with an earlier offset). Results are linked to input
records by their `source.*` headers, and by `event_id` for results published without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from connector.codec import decode_event
from connector.config import Settings
from connector.errors import InvalidEventError, KafkaReadError
from connector.kafka.client import client_options, stop_consumer, unreachable
from connector.kafka.partitioners import candidate_partitions, murmur2
from connector.kafka.tls import load_ssl_context
from connector.models import DEFAULT_CONNECTION, Outcome, Platform, Source
from connector.observability.tracecontext import TraceContext
from connector.stores import DeliveryState, OrderRecords, open_store

#: `Story.store` when the store was read; otherwise it says why not.
STORE_READ = "read"
_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """An RFC 3339 time (UTC when it names no offset) or a span back from `now`: `90m`, `2h`, `3d`."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither an RFC 3339 time nor a span such as 30m, 2h or 3d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- what is shown ------------------------------------------------------------------------------


class Status(StrEnum):
    """A delivery's state in the story when it has no result of its own (else an `Outcome`)."""

    #: No result yet; `store` says how far it got.
    PENDING = "pending"
    #: A later copy of an event already delivered: the connector publishes no second result.
    DUPLICATE = "duplicate"


@dataclass
class Delivery:
    #: The platform, or `platform/connection` for a connection other than `default`.
    platform: str
    #: An `Outcome` value, or `pending` / `duplicate`.
    outcome: str
    status_code: int | None = None
    attempts: int | None = None
    error: dict[str, Any] | None = None
    completed_at: str | None = None
    #: The store's state of this delivery (`claimed`, `done`, `reported`), when it holds one.
    store: str | None = None
    #: The `traceparent` its requests and its result carried (README "Traces").
    traceparent: str | None = None


@dataclass
class DeadLetter:
    reason: str
    message: str
    at: str


@dataclass
class Version:
    """One input record of the order (or, outside the window, one known only from its results)."""

    event_id: str | None
    version: int | None
    status: str | None
    #: When the input record was written (its Kafka timestamp); None when it is outside the window.
    received_at: str | None
    partition: int | None
    offset: int | None
    dlq: DeadLetter | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    #: The trace id of the input record's `traceparent`, when it carried a valid one.
    trace_id: str | None = None


@dataclass
class Applied:
    version: int
    #: The store's applied version, and the newest version an `applied` result in the window names.
    store: int | None
    results: int | None


@dataclass
class Story:
    order_number: str
    since: str
    input_partitions_read: list[int]
    store: str
    versions: list[Version]
    applied: dict[str, Applied]

    @property
    def known(self) -> bool:
        return bool(self.versions)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    record: ConsumerRecord
    event_id: str | None
    version: int | None
    status: str | None
    platforms: tuple[Platform, ...]
    #: The connection each targeted platform names (README "Connections").
    connections: dict[Platform, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Result:
    document: dict[str, Any]
    source: Source | None
    trace: TraceContext | None


@dataclass(frozen=True)
class _DeadLetter:
    record: ConsumerRecord
    source: Source | None


def _iso(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class _Reader:
    def __init__(self, consumer: AIOKafkaConsumer, since: datetime) -> None:
        self._consumer = consumer
        self._since_ms = int(since.timestamp() * 1000)

    def partition_count(self, topic: str) -> int:
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            raise KafkaReadError(f"topic {topic} does not exist")
        return len(partitions)

    async def read(self, tps: Collection[TopicPartition], key: bytes) -> AsyncIterator[ConsumerRecord]:
        """The records with this key in `tps`, from `since` to each partition's end as first fetched."""
        if not tps:
            return
        starts = await self._consumer.offsets_for_times(dict.fromkeys(tps, self._since_ms))
        positions = {tp: found.offset for tp, found in starts.items() if found is not None}
        if not positions:
            return
        self._consumer.assign(list(positions))
        for tp, offset in positions.items():
            self._consumer.seek(tp, offset)
        ends: dict[TopicPartition, int | None] = dict.fromkeys(positions)
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for tp in positions:
                if ends[tp] is None:
                    ends[tp] = self._consumer.highwater(tp)
            for tp, records in batches.items():
                end = ends[tp]
                for record in records:
                    if end is not None and record.offset >= end:
                        break
                    positions[tp] = record.offset + 1
                    if record.key == key and record.timestamp >= self._since_ms:
                        yield record
            if all(end is not None and positions[tp] >= end for tp, end in ends.items()):
                return
            if not batches and all(end is not None for end in ends.values()):
                # Nothing more to fetch (the log may end in entries that are not records).
                return


def _decode_input(record: ConsumerRecord, enabled: Collection[Platform]) -> _Input:
    try:
        event = decode_event(record.value)
    except InvalidEventError:
        # Not an event (it went to the DLQ): show what can be read of it.
        document: Any = None
        with contextlib.suppress(orjson.JSONDecodeError):
            document = orjson.loads(record.value) if record.value is not None else None
        if not isinstance(document, dict):
            return _Input(record, None, None, None, ())
        order: dict[str, Any] = document["order"] if isinstance(document.get("order"), dict) else {}
        event_id, version = document.get("event_id"), order.get("version")
        return _Input(
            record,
            event_id if isinstance(event_id, str) else None,
            version if isinstance(version, int) else None,
            None,
            (),
        )
    platforms = event.targets.platforms()
    if enabled:
        # With the connector's own configuration, platforms it does not deliver to are left out;
        # without it (no platform configured here), every target is shown.
        platforms = [p for p in platforms if p in enabled]
    connections = {p: event.targets.connection_of(p) for p in platforms}
    return _Input(
        record, event.event_id, event.order.version, event.order.status.value, tuple(platforms), connections
    )


def _decode_result(record: ConsumerRecord) -> _Result | None:
    try:
        document = orjson.loads(record.value)
        Platform(document["platform"])
        Outcome(document["outcome"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    headers = record.headers or ()
    return _Result(document, Source.from_headers(headers), TraceContext.from_headers(headers))


def _header(record: ConsumerRecord, name: str) -> str:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode("utf-8", "replace")
    return ""


async def read_history(
    settings: Settings, order_number: str, since: datetime, *, use_store: bool = True, timeout_s: float = 300
) -> Story:
    """Raise `KafkaReadError` when Kafka cannot be read (or not within `timeout_s`), and
    `StoreUnavailableError` when the store does not answer."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_history(settings, order_number, since, use_store)
    except TimeoutError:
        raise KafkaReadError(f"no answer within {timeout_s:g}s") from None


async def _read_history(settings: Settings, order_number: str, since: datetime, use_store: bool) -> Story:
    kafka = settings.kafka
    key = order_number.encode("utf-8")
    await load_ssl_context(kafka)
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False)
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise KafkaReadError(await unreachable(kafka, exc)) from exc
    try:
        reader = _Reader(consumer, since)
        outputs = [
            TopicPartition(topic, murmur2(key, reader.partition_count(topic)))
            for topic in (kafka.success_topic, kafka.failure_topic, kafka.dlq_topic)
        ]
        inputs_total = reader.partition_count(kafka.input_topic)
        results: list[_Result] = []
        dead: list[_DeadLetter] = []
        async for record in reader.read(outputs, key):
            if record.topic == kafka.dlq_topic:
                dead.append(_DeadLetter(record, Source.from_headers(record.headers or ())))
            elif (result := _decode_result(record)) is not None:
                results.append(result)

        sources = {
            s.partition
            for s in [r.source for r in results] + [d.source for d in dead]
            if s is not None and s.topic == kafka.input_topic and s.partition < inputs_total
        }
        first = sorted(sources) if sources else candidate_partitions(key, inputs_total)
        rest = [p for p in range(inputs_total) if p not in first]
        enabled = settings.platforms.enabled()
        received = [
            _decode_input(r, enabled)
            async for r in reader.read([TopicPartition(kafka.input_topic, p) for p in first], key)
        ]
        read = list(first)
        if not received and rest:
            received = [
                _decode_input(r, enabled)
                async for r in reader.read([TopicPartition(kafka.input_topic, p) for p in rest], key)
            ]
            read += rest
        # Input order, which is the order the connector delivers in (normally one partition).
        received.sort(key=lambda i: (i.record.partition, i.record.offset))
    except KafkaError as exc:
        raise KafkaReadError(f"reading Kafka at {kafka.bootstrap_servers} failed: {exc}") from exc
    finally:
        await stop_consumer(consumer)

    event_ids = [i.event_id for i in received if i.event_id] + [r.document["event_id"] for r in results]
    records, store_note = await _store_records(settings, order_number, event_ids, use_store)
    return Story(
        order_number=order_number,
        since=since.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        input_partitions_read=sorted(read),
        store=store_note,
        versions=_versions(kafka.input_topic, received, results, dead, records),
        applied=_applied(results, records),
    )


async def _store_records(
    settings: Settings, order_number: str, event_ids: list[str], use_store: bool
) -> tuple[OrderRecords, str]:
    """The store's view, or an empty one (with why) when it is not asked or not there."""
    empty = OrderRecords({}, {})
    if not use_store:
        return empty, "not read (--no-store)"
    url = settings.idempotency.url.get_secret_value()
    sqlite = url.lower().startswith("sqlite:///")
    if sqlite and not await asyncio.to_thread(Path(url[len("sqlite:///") :]).exists):
        # Opening would create an empty store here; this machine is not where the connector runs.
        return empty, "not read (no SQLite store at this path)"
    store = open_store(url, settings.idempotency.timeout_s)
    await store.open()
    try:
        return await store.order_records(order_number, list(dict.fromkeys(event_ids))), STORE_READ
    finally:
        await store.close()


def _versions(
    input_topic: str,
    received: list[_Input],
    results: list[_Result],
    dead: list[_DeadLetter],
    records: OrderRecords,
) -> list[Version]:
    by_source: dict[tuple[int, int], list[_Result]] = {}
    by_event: dict[str, list[_Result]] = {}
    for result in results:
        if result.source is not None and result.source.topic == input_topic:
            by_source.setdefault((result.source.partition, result.source.offset), []).append(result)
        by_event.setdefault(result.document["event_id"], []).append(result)
    dead_by_source = {
        (d.source.partition, d.source.offset): d
        for d in dead
        if d.source is not None and d.source.topic == input_topic
    }
    linked: set[int] = set()
    linked_dead: set[int] = set()
    versions: list[Version] = []
    for item in received:
        record = item.record
        version = Version(
            item.event_id,
            item.version,
            item.status,
            _iso(record.timestamp),
            record.partition,
            record.offset,
        )
        trace = TraceContext.from_headers(record.headers or ())
        version.trace_id = trace.trace_id if trace is not None else None
        versions.append(version)
        letter = dead_by_source.get((record.partition, record.offset))
        if letter is not None:
            linked_dead.add(id(letter))
            version.dlq = DeadLetter(
                _header(letter.record, "error.reason"),
                _header(letter.record, "error.message"),
                _iso(letter.record.timestamp),
            )
            continue
        here = {
            Platform(r.document["platform"]): r for r in by_source.get((record.partition, record.offset), [])
        }
        elsewhere = {
            Platform(r.document["platform"]): r
            for r in by_event.get(item.event_id or "", [])
            if r.source is None
            or r.source.topic != input_topic
            or (r.source.partition, r.source.offset) < (record.partition, record.offset)
        }
        for platform in sorted({*item.platforms, *here}, key=list(Platform).index):
            state = records.deliveries.get((item.event_id or "", platform))
            store = state.value if state is not None else None
            if (item.event_id or "", platform) in records.parked:
                store = PARKED
            if platform in here:
                linked.add(id(here[platform]))
                version.deliveries.append(_delivery(here[platform], store))
            elif platform in elsewhere and elsewhere[platform].source is None:
                linked.add(id(elsewhere[platform]))
                version.deliveries.append(_delivery(elsewhere[platform], store))
            elif platform in elsewhere:
                target = _target(platform.value, item.connections.get(platform))
                version.deliveries.append(Delivery(target, Status.DUPLICATE, store=store))
            else:
                target = _target(platform.value, item.connections.get(platform))
                version.deliveries.append(Delivery(target, Status.PENDING, store=store))
    # What the window holds of events received before it: their results and DLQ copies alone.
    earlier: dict[str, Version] = {}
    for result in results:
        if id(result) in linked:
            continue
        event_id = result.document["event_id"]
        if any(v.event_id == event_id for v in versions if v.received_at is not None):
            continue
        known = earlier.get(event_id)
        if known is None:
            known = Version(event_id, result.document.get("order_version"), None, None, None, None)
            if result.source is not None:
                known.partition, known.offset = result.source.partition, result.source.offset
            earlier[event_id] = known
        state = records.deliveries.get((event_id, Platform(result.document["platform"])))
        known.deliveries.append(_delivery(result, state.value if state is not None else None))
    versions.extend(earlier.values())
    for letter in dead:
        if id(letter) in linked_dead:
            continue
        source = letter.source
        versions.append(
            Version(
                None,
                None,
                None,
                None,
                source.partition if source else None,
                source.offset if source else None,
                DeadLetter(
                    _header(letter.record, "error.reason"),
                    _header(letter.record, "error.message"),
                    _iso(letter.record.timestamp),
                ),
            )
        )
    return versions


def _delivery(result: _Result, store: str | None) -> Delivery:
    document = result.document
    return Delivery(
        _target(document["platform"], document.get("connection")),
        document["outcome"],
        document.get("status_code"),
        document.get("attempts"),
        document.get("error"),
        document.get("completed_at"),
        store,
        result.trace.traceparent if result.trace is not None else None,
    )


def _target(platform: str, connection: Any) -> str:
    """How a delivery's target is shown: the platform, with `/connection` unless it is `default`."""
    if not isinstance(connection, str) or connection == DEFAULT_CONNECTION:
        return platform
    return f"{platform}/{connection}"


def _applied(results: Iterable[_Result], records: OrderRecords) -> dict[str, Applied]:
    """The newest version applied per target (`platform` or `platform/connection`)."""
    from_results: dict[str, int] = {}
    for result in results:
        if result.document["outcome"] == Outcome.APPLIED.value:
            target = _target(result.document["platform"], result.document.get("connection"))
            version = int(result.document["order_version"])
            from_results[target] = max(version, from_results.get(target, version))
    applied: dict[str, Applied] = {}
    order = {p.value: i for i, p in enumerate(Platform)}
    for target in sorted({*records.applied, *from_results}, key=lambda t: (order.get(t.split("/")[0], 9), t)):
        store, seen = records.applied.get(target), from_results.get(target)
        known = [v for v in (store, seen) if v is not None]
        if known:
            applied[target] = Applied(max(known), store, seen)
    return applied


# --- showing ------------------------------------------------------------------------------------

#: A delivery's store state when it waits, parked, for its held connection (README "Isolation
#: between connections").
PARKED = "parked"

_STORE_NOTES = {
    PARKED: "held: waiting in the store for its connection",
    DeliveryState.CLAIMED.value: "in flight",
    DeliveryState.DONE.value: "outcome stored, result not yet published",
    DeliveryState.REPORTED.value: "reported; its result is outside the window",
}


def render_text(story: Story) -> list[Any]:
    """Rich renderables: the versions table, then the newest version applied per platform."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"order {story.order_number} since {story.since}", title_justify="left")
    for name in (
        "received",
        "version",
        "event_id",
        "input",
        "platform",
        "outcome",
        "code",
        "tries",
        "detail",
    ):
        table.add_column(name, justify="right" if name in ("version", "code", "tries") else "left")
    for version in story.versions:
        common = [
            version.received_at or "(before window)",
            "" if version.version is None else str(version.version),
            version.event_id or "-",
            "" if version.partition is None else f"{version.partition}@{version.offset}",
        ]
        if version.dlq is not None:
            table.add_row(*common, "-", f"dlq: {version.dlq.reason}", "", "", version.dlq.message)
            continue
        if not version.deliveries:
            table.add_row(*common, "-", "no platform", "", "", "not a target of any enabled platform")
        for delivery in version.deliveries:
            detail = ""
            if delivery.error:
                detail = f"{delivery.error.get('category')}: {delivery.error.get('message')}"
            elif delivery.outcome == Status.PENDING and story.store != STORE_READ:
                detail = "no result yet"
            elif delivery.outcome == Status.PENDING:
                detail = _STORE_NOTES.get(delivery.store or "", "waiting (not claimed)")
            elif delivery.outcome == Status.DUPLICATE:
                detail = "a copy of an event already delivered"
            if delivery.completed_at:
                detail = f"{delivery.completed_at} {detail}".strip()
            table.add_row(
                *common,
                delivery.platform,
                delivery.outcome,
                "" if delivery.status_code is None else str(delivery.status_code),
                "" if delivery.attempts is None else str(delivery.attempts),
                detail,
            )
            common = ["", "", "", ""]
    applied = ", ".join(
        f"{name} v{a.version}" + (f" (store v{a.store})" if a.store is not None else "")
        for name, a in story.applied.items()
    )
    footer = Text(
        f"newest applied: {applied or 'none'}\n"
        f"input partitions read: {','.join(map(str, story.input_partitions_read))}; store: {story.store}"
    )
    return [table, footer]
