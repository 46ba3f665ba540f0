"""What every scenario needs: the simulators in their own process, fresh topics, producing and reading."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.events import BenchEvent
from connector.config import ENV_PREFIX
from connector.devtools.broker import EmbeddedBroker, accepts_connections, free_port
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
ORDER_SYNC = str(BIN / "order-sync")
PARTITIONS = 4


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The bench's environment without any ORDER_SYNC_ setting of its own, plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**base, **extra}


class Child:
    """A subprocess with its output in a log file; always stopped on exit."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        # From the repository root, where `python -m bench.…` finds this package.
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=self._log, cwd=ROOT)
        self.started_at = time.time()

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def check(self) -> None:
        if not self.running():
            raise RuntimeError(f"{self.argv[0]} exited with {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait(self, timeout_s: float) -> None:
        """Until the process exits or `timeout_s` passes."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, timeout_s)

    async def stop(self, timeout_s: float = 40.0) -> int:
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        await self.wait(timeout_s)
        if self.running():
            self.process.kill()
        code = self.process.wait()
        self._log.close()
        return code


@dataclass
class Simulators:
    """`order-sync simulate` in a process of its own, so it never takes the measured process's CPU."""

    child: Child
    port: int
    latency_ms: float

    @classmethod
    async def start(cls, latency_ms: float, workdir: Path) -> Simulators:
        port = free_port()
        # No platform limits: the bench measures the connector, not Elastic Path's or Sellercloud's quota.
        argv = [ORDER_SYNC, "simulate", "--no-limits", "--port", str(port), "--latency-ms", str(latency_ms)]
        child = Child(argv, child_env({}), workdir / f"simulators-{latency_ms:g}ms.log")
        deadline = time.monotonic() + 30
        while not await accepts_connections(port):
            child.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the simulators did not start listening within 30 s")
            await asyncio.sleep(0.05)
        return cls(child, port, latency_ms)

    def connector_env(self) -> dict[str, str]:
        """BASE_URL and credentials per platform (the simulators' fixed ones) for `order-sync run`."""
        env: dict[str, str] = {}
        for platform, simulator in SimulatorSuite().simulators.items():
            base_url = f"http://127.0.0.1:{self.port}{simulator.mount}"
            for key, value in simulator.connector_settings(base_url).items():
                env[f"{ENV_PREFIX}PLATFORMS__{platform.value.upper()}__{key.upper()}"] = value
        # The simulators enforce no request rate, and neither the naive loop nor the limit has one:
        # Elastic Path's production default (100 rps) would cap every event at 100/s, Sellercloud's
        # (3 rps, its hourly quota) at 3/s.
        env[f"{ENV_PREFIX}PLATFORMS__ELASTICPATH__RATE_LIMIT_RPS"] = "0"
        env[f"{ENV_PREFIX}PLATFORMS__SELLERCLOUD__RATE_LIMIT_RPS"] = "0"
        return env

    async def stop(self) -> None:
        await self.child.stop(timeout_s=10)


@dataclass(frozen=True)
class Topics:
    input: str
    success: str
    failure: str
    dlq: str
    group: str

    @classmethod
    async def create(cls, bootstrap: str, label: str) -> Topics:
        suffix = f"{label}.{uuid.uuid4().hex[:6]}"
        topics = cls(
            f"orders.changed.{suffix}",
            f"orders.sync.succeeded.{suffix}",
            f"orders.sync.failed.{suffix}",
            f"orders.changed.dlq.{suffix}",
            f"order-sync.{suffix}",
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)
                    for name in (topics.input, topics.success, topics.failure, topics.dlq)
                ]
            )
        finally:
            await admin.close()
        return topics

    def connector_env(self) -> dict[str, str]:
        return {
            f"{ENV_PREFIX}KAFKA__INPUT_TOPIC": self.input,
            f"{ENV_PREFIX}KAFKA__SUCCESS_TOPIC": self.success,
            f"{ENV_PREFIX}KAFKA__FAILURE_TOPIC": self.failure,
            f"{ENV_PREFIX}KAFKA__DLQ_TOPIC": self.dlq,
            f"{ENV_PREFIX}KAFKA__GROUP_ID": self.group,
        }


@dataclass
class Produced:
    """When each event was produced (time.time()), and each partition's end offset after it."""

    at: dict[str, float]
    ends: dict[int, int]


async def produce_all(bootstrap: str, topic: str, events: list[BenchEvent]) -> Produced:
    """Publish as fast as the broker takes them."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=10, max_batch_size=1_048_576
    )
    await producer.start()
    produced = Produced({}, {})
    try:
        futures = []
        for event in events:
            now = time.time()
            produced.at[event.event_id] = now
            futures.append(
                await producer.send(topic, event.value, key=event.key, timestamp_ms=int(now * 1000))
            )
        for metadata in await asyncio.gather(*futures):
            produced.ends[metadata.partition] = max(
                produced.ends.get(metadata.partition, 0), metadata.offset + 1
            )
    finally:
        await producer.stop()
    return produced


async def produce_paced(
    bootstrap: str, topic: str, events: list[BenchEvent], rate_per_s: float
) -> dict[str, float]:
    """Publish one event every 1/rate seconds, without batching delay; returns each produce time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=0)
    await producer.start()
    produced: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    try:
        futures = []
        start = loop.time()
        for index, event in enumerate(events):
            delay = start + index / rate_per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            produced[event.event_id] = now
            futures.append(
                await producer.send(topic, event.value, key=event.key, timestamp_ms=int(now * 1000))
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return produced


async def wait_for_commits(
    bootstrap: str,
    topics: Topics,
    ends: dict[int, int],
    timeout_s: float,
    watch: Child,
    poll_s: float = 0.25,
    one_group: bool = False,
) -> tuple[int, float]:
    """Poll the committed input offsets of every pipeline's group (the intake's and each platform's;
    with `one_group`, the single group of `bench.floor --groups one`) until they all reach `ends`
    (every event done on every platform).

    A platform's pipeline commits an offset only once its result for every event below it is
    acknowledged, so this is "all results published". (Tansu's ListOffsets answers lag behind the
    last batch, so end offsets of the result topics cannot be used to count results.) Returns (events
    committed by the slowest pipeline, time.time()).
    """
    groups = [topics.group, *(() if one_group else (f"{topics.group}.{p.value}" for p in Platform))]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    partitions = [TopicPartition(topics.input, p) for p in range(PARTITIONS)]
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            done = None
            complete = True
            for group in groups:
                offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
                group_done = sum(max(0, meta.offset) for meta in offsets.values())
                done = group_done if done is None else min(done, group_done)
                complete = complete and all(
                    offsets[tp].offset >= end for tp in partitions if (end := ends.get(tp.partition))
                )
            if complete or time.monotonic() > deadline:
                return done or 0, time.time()
            watch.check()
            await asyncio.sleep(poll_s)
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class ResultRecord:
    event_id: str
    outcome: str
    #: Kafka timestamp of the result message: when the connector handed it to its producer.
    published_at: float
    #: When this process received it (only for results read live).
    received_at: float


async def read_results(
    bootstrap: str, topics: Topics, expected: int, timeout_s: float = 60
) -> list[ResultRecord]:
    """Every result message on the success and failure topics (read after the run, from the start)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[ResultRecord] = []
    try:
        partitions = [
            TopicPartition(t, p) for t in (topics.success, topics.failure) for p in range(PARTITIONS)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            now = time.time()
            for batch in batches.values():
                for record in batch:
                    records.append(_result(record.value, record.timestamp, now))
    finally:
        await consumer.stop()
    return records


def _result(value: bytes, timestamp_ms: int, received_at: float) -> ResultRecord:
    result = orjson.loads(value)
    return ResultRecord(result["event_id"], result["outcome"], timestamp_ms / 1000, received_at)


class LiveResults:
    """Reads results as they arrive, stamping when each was received (for the latency scenario)."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
        )
        self._topics = topics
        self.records: list[ResultRecord] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = [
            TopicPartition(t, p)
            for t in (self._topics.success, self._topics.failure)
            for p in range(PARTITIONS)
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=50)
            now = time.time()
            for batch in batches.values():
                for record in batch:
                    self.records.append(_result(record.value, record.timestamp, now))

    async def wait_for(self, expected: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.records) < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def wait_ready(http_port: int, watch: Child, timeout_s: float = 60) -> None:
    """Until the connector's /readyz answers 200 (joined its group, store up)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            watch.check()
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{http_port}/readyz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"connector not ready after {timeout_s}s:\n{watch.log_tail()}")
            await asyncio.sleep(0.05)


async def wait_for_file(path: Path, watch: Child, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(path.exists):
        watch.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {timeout_s}s:\n{watch.log_tail()}")
        await asyncio.sleep(0.05)


class Broker(EmbeddedBroker):
    """The embedded broker, with its process id for CPU accounting."""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None
