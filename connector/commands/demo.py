"""`order-sync demo`: broker, simulators, connector and a generator of sample events in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector.app import Connector
from connector.config import Settings, load_settings
from connector.devtools.broker import EmbeddedBroker, free_port
from connector.devtools.samples import SampleSet, connection_names, generate
from connector.devtools.simulators.elasticpath import ElasticPathSimulator
from connector.devtools.simulators.limits import RequestsPerSecond, WindowQuota
from connector.devtools.simulators.sellercloud import SellercloudSimulator
from connector.devtools.simulators.server import SimulatorSuite
from connector.kafka.client import create_topics
from connector.models import Outcome, Platform
from connector.observability.logs import JsonFormatter
from connector.observability.redaction import Redactor, secrets_of

#: `--chaos`: Sellercloud's quota shape (so many requests, then 429 until the window's end), in
#: seconds instead of an hour, and an Elastic Path production store's per-second limit, shared with
#: a busy storefront that now and then takes the last request of a second.
CHAOS_SELLERCLOUD_QUOTA = 100
CHAOS_SELLERCLOUD_WINDOW_S = 2.0
CHAOS_ELASTICPATH_STORE_RPS = 100.0
CHAOS_ELASTICPATH_SHARED_EVERY = 40
#: `--chaos --connections N`: this Sellercloud account is down for this long (the others are not).
CHAOS_DOWN_ACCOUNT = "conn1"
CHAOS_DOWN_S = 10.0
#: Up to this many connections per platform, progress and summary show each connection.
SHOWN_CONNECTIONS = 4
TOPIC_NAMES = ("orders.changed", "orders.sync.succeeded", "orders.sync.failed", "orders.changed.dlq")


@dataclass
class Tally:
    """What the result topics said, per platform."""

    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    durations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seen: set[str] = field(default_factory=set)
    dlq: Counter[str] = field(default_factory=Counter)
    #: Count per `platform/connection` rather than per platform.
    by_connection: bool = False

    def add_result(self, value: bytes) -> str | None:
        result = orjson.loads(value)
        if result["result_id"] in self.seen:
            return None
        self.seen.add(result["result_id"])
        label = _label(result["platform"], result.get("connection", "default"), self.by_connection)
        self.outcomes[label][result["outcome"]] += 1
        self.durations[label].append(result["duration_ms"])
        return label


def _label(platform: str, connection: str, by_connection: bool) -> str:
    return f"{platform}/{connection}" if by_connection else platform


def _settings(env: dict[str, str], store: Path, http_port: int) -> Settings:
    values = {
        **env,
        "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{store}",
        "ORDER_SYNC_HTTP__PORT": str(http_port),
        "ORDER_SYNC_HTTP__HOST": "127.0.0.1",
        "ORDER_SYNC_KAFKA__COMMIT_INTERVAL_S": "0.5",
        "ORDER_SYNC_KAFKA__SESSION_TIMEOUT_MS": "10000",
        "ORDER_SYNC_LOG_LEVEL": "INFO",
    }
    for platform in Platform:
        prefix = f"ORDER_SYNC_PLATFORMS__{platform.value.upper()}__"
        values.setdefault(prefix + "BACKOFF_BASE_S", "0.1")
        values.setdefault(prefix + "CIRCUIT_RESET_S", "2")
    return load_settings(environ=values)


def _chaos(suite: SimulatorSuite) -> list[str]:
    """Turn on faults and platform limits a newcomer should see handled; return what was turned on.

    Every account gets its own quota and limits, as each is an account of its own on the platform.
    """
    several = len(suite.accounts(Platform.SELLERCLOUD)) > 1
    if several:
        suite.account(Platform.SELLERCLOUD, CHAOS_DOWN_ACCOUNT).faults.outage_for(CHAOS_DOWN_S)
    else:
        suite.sellercloud.faults.outage_for(6.0)
    for account in suite.accounts(Platform.SELLERCLOUD).values():
        # Sellercloud's hourly quota (10,800 requests, then 429 until its reset time), scaled down
        # to seconds so that a demo meets it; the demo's connector does not pace Sellercloud itself.
        account.limit = WindowQuota(CHAOS_SELLERCLOUD_QUOTA, CHAOS_SELLERCLOUD_WINDOW_S)
        cast(SellercloudSimulator, account).tokens.lifetime_s = 5.0
    for account in suite.accounts(Platform.ELASTICPATH).values():
        # A production store's limit, which the storefront shares: a 429 now and then that has
        # nothing to do with the connector's own rate.
        account.limit = RequestsPerSecond(CHAOS_ELASTICPATH_STORE_RPS)
        account.faults.update(rate_limit_every=CHAOS_ELASTICPATH_SHARED_EVERY, retry_after_s=1)
        cast(ElasticPathSimulator, account).tokens.lifetime_s = 5.0
    for account in suite.accounts(Platform.VUCUSTOM).values():
        account.faults.update(error_rate=0.05)
    for account in suite.accounts(Platform.VENTMERE).values():
        account.faults.update(latency_s=0.005, jitter_s=0.02)
    down = (
        f"Sellercloud: account {CHAOS_DOWN_ACCOUNT} answers 503 for the first {CHAOS_DOWN_S:g} s (its"
        " deliveries wait in the store; the other accounts keep their pace)"
        if several
        else "Sellercloud: 503 outage for the first 6 s (circuit breaker opens, deliveries wait)"
    )
    return [
        down,
        f"Sellercloud: quota of {CHAOS_SELLERCLOUD_QUOTA} requests per {CHAOS_SELLERCLOUD_WINDOW_S:g} s, then"
        " 429 until its RateLimitResetTime (every Sellercloud request is held until then)",
        f"Elastic Path: a store allowing {CHAOS_ELASTICPATH_STORE_RPS:g} requests/s, shared with a"
        f" storefront: every {CHAOS_ELASTICPATH_SHARED_EVERY}th request answers 429 (Retry-After 1 s);"
        " the connector keeps its rate",
        "VU Custom: 5% of requests answer 500",
        "Ventmere: 5-25 ms latency",
        "Sellercloud and Elastic Path: tokens live 5 s (refreshed before expiry and on 401)",
    ]


async def _produce(bootstrap: str, topic: str, samples: SampleSet) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=10)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in samples.messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _watch(
    bootstrap: str,
    topics: tuple[str, ...],
    expected: dict[str, int],
    malformed: int,
    progress: Progress,
    bars: dict[str, TaskID],
    dlq_bar: TaskID,
    tally: Tally,
    timeout_s: float,
) -> bool:
    consumer = AIOKafkaConsumer(*topics[1:], bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            done = all(sum(tally.outcomes[p].values()) >= n for p, n in expected.items())
            if done and sum(tally.dlq.values()) >= malformed:
                return True
            if time.monotonic() > deadline:
                return False
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    if record.topic == topics[3]:
                        headers = dict(record.headers or ())
                        tally.dlq[headers.get("error.reason", b"?").decode()] += 1
                        progress.update(dlq_bar, completed=sum(tally.dlq.values()))
                    elif record.value is not None and (platform := tally.add_result(record.value)):
                        progress.update(bars[platform], completed=sum(tally.outcomes[platform].values()))
    finally:
        await consumer.stop()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _summary(tally: Tally, expected: dict[str, int]) -> Table:
    table = Table(title="order-sync demo: outcomes per platform")
    table.add_column("platform")
    for column in ("applied", "skipped", "rejected", "unmappable", "exhausted", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for platform in expected:
        counts = tally.outcomes[platform]
        durations = tally.durations[platform]
        table.add_row(
            platform,
            str(counts[Outcome.APPLIED.value]),
            str(counts[Outcome.SKIPPED_STALE.value]),
            str(counts[Outcome.REJECTED.value]),
            str(counts[Outcome.UNMAPPABLE.value]),
            str(counts[Outcome.EXHAUSTED.value]),
            f"{_percentile(durations, 50):.1f}",
            f"{_percentile(durations, 99):.1f}",
        )
    return table


async def run_demo(
    events: int,
    chaos: bool,
    console: Console,
    timeout_s: float = 600,
    bootstrap_servers: str | None = None,
    summary_json: Path | None = None,
    connections: int = 1,
) -> int:
    """Run the demo; with `bootstrap_servers`, use that broker (topics get a unique suffix) instead of
    an embedded one. Exit code 0 when every event reached an outcome on every platform."""
    workdir = Path(tempfile.mkdtemp(prefix="order-sync-demo-"))
    topics: tuple[str, ...]
    async with contextlib.AsyncExitStack() as stack:
        if bootstrap_servers is None:
            broker = await stack.enter_async_context(EmbeddedBroker(log_file=workdir / "broker.log"))
            bootstrap_servers = broker.bootstrap_servers
            topics = TOPIC_NAMES
        else:
            suffix = uuid.uuid4().hex[:8]
            topics = tuple(f"{name}.demo-{suffix}" for name in TOPIC_NAMES)
            # Until the connector's log file takes over, a broker that does not answer is reported
            # once, as the command's error, not also line by line by aiokafka's connection attempts.
            logging.getLogger().addHandler(logging.NullHandler())
        # On the broker the demo was given, whatever its host: not on 127.0.0.1 at the same port.
        await create_topics(bootstrap_servers, list(topics), partitions=4)
        suite = await stack.enter_async_context(SimulatorSuite())
        for platform in Platform:
            for name in connection_names(connections)[1:]:
                suite.add_account(platform, name)
        return await _run(
            events,
            chaos,
            console,
            timeout_s,
            bootstrap_servers,
            topics,
            suite,
            workdir,
            summary_json,
            connections,
        )
    raise AssertionError("unreachable")


async def _run(
    events: int,
    chaos: bool,
    console: Console,
    timeout_s: float,
    bootstrap: str,
    topics: tuple[str, ...],
    suite: SimulatorSuite,
    workdir: Path,
    summary_json: Path | None,
    connections: int,
) -> int:
    log_path = workdir / "connector.log"
    notes = _chaos(suite) if chaos else []
    http_port = free_port()
    env = {**suite.connector_env(), "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap}
    for key, name in zip(("INPUT", "SUCCESS", "FAILURE", "DLQ"), topics, strict=True):
        env[f"ORDER_SYNC_KAFKA__{key}_TOPIC"] = name
    env["ORDER_SYNC_KAFKA__GROUP_ID"] = f"order-sync-{topics[0]}"
    settings = _settings(env, workdir / "idempotency.db", http_port)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(JsonFormatter(Redactor(secrets_of(settings))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    connector = Connector(settings)
    samples = generate(events, connections=connections)
    by_connection = 1 < connections <= SHOWN_CONNECTIONS
    expected: Counter[str] = Counter()
    for event_id, platforms in samples.targets.items():
        expected.update(
            _label(p, samples.connections.get((event_id, p), "default"), by_connection) for p in platforms
        )
    accounts = f", {connections} accounts per platform" if connections > 1 else ""
    console.print(
        f"[bold]order-sync demo[/]: {events} events ({samples.malformed} malformed){accounts} on {topics[0]}"
    )
    console.print(f"  broker {bootstrap}, simulators http://127.0.0.1:{suite.port}")
    console.print(f"  metrics http://127.0.0.1:{http_port}/metrics, logs {log_path}")
    for note in notes:
        console.print(f"  [yellow]chaos[/]: {note}")
    run = asyncio.create_task(connector.run())
    started = time.monotonic()
    tally = Tally(by_connection=by_connection)
    columns = (
        TextColumn("{task.description:<20}" if by_connection else "{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bars = {p: progress.add_task(p, total=n) for p, n in sorted(expected.items())}
        dlq_bar = progress.add_task("dlq", total=samples.malformed)
        await _produce(bootstrap, topics[0], samples)
        finished = await _watch(
            bootstrap, topics, dict(expected), samples.malformed, progress, bars, dlq_bar, tally, timeout_s
        )
    elapsed = time.monotonic() - started
    connector.request_stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(run, timeout=settings.shutdown_timeout_s + 5)
    root.removeHandler(handler)
    handler.close()
    console.print(_summary(tally, dict(expected)))
    deliveries = sum(expected.values())
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(tally.dlq.items()))
    console.print(
        f"{len(samples.targets)} valid events, {deliveries} deliveries, "
        f"DLQ: {sum(tally.dlq.values())} ({reasons or 'none'}), "
        f"{elapsed:.1f}s ({deliveries / elapsed:.0f} deliveries/s)"
    )
    held: defaultdict[str, float] = defaultdict(float)
    for metric in connector.metrics.throttled_seconds.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                held[_label(sample.labels["platform"], sample.labels["connection"], connections > 1)] += (
                    sample.value
                )
    if any(held.values()):
        console.print(
            "held by platform-wide throttles (order_sync_throttled_seconds_total): "
            + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in sorted(held.items()) if seconds)
        )
    console.print(f"metrics were served at http://127.0.0.1:{http_port}/metrics; connector log: {log_path}")
    if summary_json is not None:
        summary = {
            "topics": dict(zip(("input", "success", "failure", "dlq"), topics, strict=True)),
            "events": events,
            "valid_events": len(samples.targets),
            "malformed": samples.malformed,
            "expected": dict(expected),
            "outcomes": {p: dict(c) for p, c in tally.outcomes.items()},
            "dlq": dict(tally.dlq),
            "finished": finished,
        }
        await asyncio.to_thread(summary_json.write_bytes, orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    if not finished:
        console.print("[red]not every event reached an outcome on every platform in time[/]")
        return 1
    return 0
