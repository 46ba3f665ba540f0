"""`order-sync pause`, `resume` and `status` (README "Operator controls").

`pause` and `resume` write one record to the compacted control topic, keyed by the target; every
replica reads it within about a second. `status` reads the compacted status topic (each replica's
newest document) and prints one table; a replica silent for three of its intervals is shown as gone.
"""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from connector.config import KafkaSettings
from connector.control.reader import ensure_compacted_topic
from connector.control.records import ControlRecord, ControlRecordError, Target, pause_record, resume_record
from connector.kafka.client import client_options, kafka_errors, producer_options, stop_consumer

#: A replica that has not published for this many of its intervals is shown as gone.
GONE_AFTER_INTERVALS = 3


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def _write(settings: KafkaSettings, target: Target, record: ControlRecord) -> None:
    async with kafka_errors(settings):
        producer = AIOKafkaProducer(**producer_options(settings))
        try:
            # Started first: an unreachable Kafka is then this command's one line, not a warning
            # about the topic too.
            await producer.start()
            await ensure_compacted_topic(settings, settings.control_topic)
            await producer.send_and_wait(
                settings.control_topic, value=record.encode(), key=str(target).encode()
            )
        finally:
            await producer.stop()


async def pause(
    settings: KafkaSettings,
    target_text: str,
    reason: str,
    until: datetime | None,
    by: str | None,
    out: TextIO,
) -> int:
    try:
        target = Target.parse(target_text)
    except ControlRecordError as exc:
        print(f"order-sync: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    if until is not None and until <= now:
        print(f"order-sync: --until {until.isoformat()} is not in the future", file=sys.stderr)
        return 2
    record = pause_record(target, by or operator(), now, reason, until)
    await _write(settings, target, record)
    ends = f" until {until.isoformat()}" if until else ""
    print(f"paused {target}{ends} ({record.by}: {reason}); every replica holds it within 2 s", file=out)
    return 0


async def resume(settings: KafkaSettings, target_text: str, by: str | None, out: TextIO) -> int:
    try:
        target = Target.parse(target_text)
    except ControlRecordError as exc:
        print(f"order-sync: {exc}", file=sys.stderr)
        return 2
    record = resume_record(target, by or operator(), datetime.now(UTC))
    await _write(settings, target, record)
    print(
        f"resumed {target} ({record.by}); its held deliveries go out at its own rate, oldest first", file=out
    )
    return 0


async def read_statuses(settings: KafkaSettings) -> list[dict[str, Any]]:
    """Each replica's newest status document, up to the topic's end at the time of the call."""
    async with kafka_errors(settings):
        consumer = AIOKafkaConsumer(
            **client_options(settings), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        try:
            await consumer.start()
            partitions = consumer.partitions_for_topic(settings.status_topic) or set()
            tps = [TopicPartition(settings.status_topic, p) for p in sorted(partitions)]
            if not tps:
                return []
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            latest: dict[bytes, dict[str, Any]] = {}
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        if record.key is None or record.value is None:
                            continue
                        try:
                            latest[record.key] = orjson.loads(record.value)
                        except orjson.JSONDecodeError:
                            continue
            return list(latest.values())
        finally:
            await stop_consumer(consumer)


def _gone(document: dict[str, Any], now: datetime) -> bool:
    published = datetime.fromisoformat(document["published_at"])
    return (now - published).total_seconds() > GONE_AFTER_INTERVALS * float(document.get("interval_s", 5))


async def status(settings: KafkaSettings, as_json: bool, out: TextIO) -> int:
    documents = await read_statuses(settings)
    now = datetime.now(UTC)
    for document in documents:
        document["gone"] = _gone(document, now)
    documents.sort(key=lambda d: (d["gone"], d["replica"]))
    if as_json:
        out.write(orjson.dumps({"replicas": documents}, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    console = Console(file=out, width=160)
    if not documents:
        console.print(f"no replica has published its status on {settings.status_topic}")
        return 0
    replicas = Table(title="order-sync replicas")
    for column in (
        "replica",
        "state",
        "version",
        "started",
        "last seen",
        "pipelines (partitions, lag, in flight)",
    ):
        replicas.add_column(column)
    for d in documents:
        pipelines = "; ".join(
            f"{p['name']} {','.join(map(str, p['partitions'])) or '-'}"
            f" lag {sum(v or 0 for v in p['lag'].values())} inflight {p['inflight']}"
            + (" PAUSED" if p.get("paused") else "")
            for p in d["pipelines"]
        )
        replicas.add_row(
            d["replica"],
            "gone" if d["gone"] else "up",
            d["version"],
            d["started_at"],
            d["published_at"],
            pipelines,
        )
    console.print(replicas)
    connections = Table(title="connections (those with something to say; the others are idle and healthy)")
    for column in (
        "replica",
        "platform/connection",
        "paused",
        "circuit",
        "throttled until",
        "held",
        "last error",
    ):
        connections.add_column(column)
    for d in documents:
        if d["gone"]:
            continue
        for c in d["connections"]:
            pause = c.get("paused")
            error = c.get("last_error")
            connections.add_row(
                d["replica"],
                f"{c['platform']}/{c['connection']}" + (" (removed)" if c.get("removed") else ""),
                f"{pause['reason']} (by {pause['by']}"
                + (f", until {pause['until']})" if pause["until"] else ")")
                if pause
                else "",
                c.get("circuit", ""),
                c.get("throttled_until") or "",
                str(c.get("held_backlog", 0)),
                f"{error['at']} {error['message']}" if error else "",
            )
    console.print(connections)
    return 0
