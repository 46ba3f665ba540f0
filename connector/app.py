"""Wires one connector together (store, adapters, publisher, pipelines, HTTP endpoints) and runs it
until SIGTERM/SIGINT; `commands/run.py` starts it for `order-sync run`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import uuid

from aiokafka.errors import KafkaError

from connector.config import Settings
from connector.control.pauses import Pauses
from connector.control.reader import ControlReader
from connector.delivery import connectionfiles
from connector.delivery.connections import ConnectionRegistry
from connector.delivery.runner import DeliveryRunner
from connector.errors import StoreUnavailableError
from connector.kafka.client import StartRetries
from connector.kafka.publisher import Publisher
from connector.kafka.tls import load_ssl_context
from connector.observability.health import HealthServer
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor, secrets_of
from connector.operations.status import StatusPublisher, StatusReport
from connector.operations.supervisor import Policy, Supervisor
from connector.pipeline.pipelines import Pipelines
from connector.platforms.transport import Transport
from connector.policies.backoff import Backoff
from connector.stores import IdempotencyStore, open_store
from connector.stores.guard import StoreGuard
from connector.stores.purge import run_purger

log = logging.getLogger(__name__)

#: How long start-up waits to have read the control topic (the pauses) before it takes work.
CONTROL_CATCH_UP_S = 10.0
#: Start-up waits for the store and Kafka: first retry after half a second, then at most every 10 s.
START_BACKOFF_FIRST_S = 0.5
START_BACKOFF_MAX_S = 10.0


class Connector:
    """One connector instance: store, adapters, publisher, pipelines and the HTTP endpoints."""

    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, *, freeze_gc: bool = False
    ) -> None:
        self.settings = settings
        #: `order-sync run` only: once the connection files are loaded, what start-up built is frozen
        #: out of the garbage collector's walks (README "Benchmarks"), as `tune_gc` did before.
        self._freeze_gc = freeze_gc
        self.metrics = metrics or Metrics()
        self.redactor = Redactor(secrets_of(settings))
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.store: IdempotencyStore = open_store(
            settings.idempotency.url.get_secret_value(),
            settings.idempotency.timeout_s,
            retention_hours=settings.idempotency.retention_hours,
        )
        self.guard = StoreGuard(self.store, self.metrics)
        self.transport = Transport()
        # The platforms whose pipelines this process runs (all enabled ones unless PIPELINES says less).
        self.enabled = settings.delivery_pipelines()
        self.pauses = Pauses(self.metrics)
        self.connections = ConnectionRegistry.from_settings(
            settings, self.enabled, self.transport, self.redactor, self.metrics
        )
        self.connection_files = (
            connectionfiles.ConnectionFiles(settings.connections_dir, settings.platforms)
            if settings.connections_dir is not None
            else None
        )
        self.publisher = Publisher(settings.kafka)
        #: Every background task of the process, the pipelines' included (README "Background tasks").
        self.supervisor = Supervisor(self.metrics.background_task_failures)
        self.runner = DeliveryRunner(
            self.connections,
            self.guard,
            self.publisher,
            self.metrics,
            self.owner,
            settings.idempotency.claim_lease_s,
        )
        self.pipelines = Pipelines(
            settings,
            self.runner,
            self.publisher,
            self.guard,
            self.enabled,
            self.metrics,
            self.pauses,
            self.supervisor,
        )
        self.control = ControlReader(settings.kafka, self.pauses)
        self.status = StatusReport(
            self.owner, self.pipelines, self.connections, self.pauses, settings.kafka.status_interval_s
        )
        self.http = HealthServer(
            self.metrics,
            self.readiness,
            settings.http.host,
            settings.http.port,
            self.status.document,
            self.supervisor.liveness,
        )
        self._stop = asyncio.Event()

    def readiness(self) -> dict[str, bool]:
        return {
            "joined_groups": self.pipelines.joined,
            "store": self.guard.up,
            "not_shutting_down": not self.pipelines.stopping,
            "background_tasks": self.supervisor.healthy,
        }

    def request_stop(self) -> None:
        log.info("shutdown requested")
        self._stop.set()
        self.pipelines.request_stop()

    async def _open_store(self) -> None:
        backoff = Backoff(START_BACKOFF_FIRST_S, START_BACKOFF_MAX_S)
        while not self._stop.is_set():
            try:
                await self.store.open()
                self.guard.mark_up()
                return
            except StoreUnavailableError as exc:
                self.guard.mark_down(exc)
                log.error(
                    "idempotency store unavailable at start-up (%s); retrying in %.1fs", exc, backoff.delay
                )
                await backoff.wait()

    async def _start_publisher(self) -> None:
        backoff = Backoff(START_BACKOFF_FIRST_S, START_BACKOFF_MAX_S)
        retries = StartRetries(self.settings.kafka, log, " for producing")
        while not self._stop.is_set():
            try:
                await self.publisher.start()
                return
            except KafkaError as exc:
                await retries.failed(exc, backoff.delay)
                await backoff.wait()

    async def _store_watch(self) -> None:
        # A ping each second, up or down: an idle connector makes no other store call, and readiness
        # must still follow the store. While it is down, the ping decides when to take new work again.
        while True:
            await asyncio.sleep(1.0)
            await self.guard.probe()

    def _start_background_tasks(self) -> None:
        """Each under its policy (README "Background tasks" says why): every one of these keeps no
        state a restart loses, so each is restarted with backoff, and given up (unhealthy) only when
        it keeps failing."""
        start = self.supervisor.start
        # Re-reads the control topic from its beginning: the same records give the same pauses.
        start("control", self.control.run, Policy.RESTART)
        status = StatusPublisher(self.settings.kafka, self.status, self.pauses)
        start("status", status.run, Policy.RESTART)
        start("store-watch", self._store_watch, Policy.RESTART)
        if (files := self.connection_files) is not None:
            start("connections", lambda: connectionfiles.watch(files, self.connections), Policy.RESTART)
        idempotency = self.settings.idempotency
        start(
            "purge",
            lambda: run_purger(
                self.store,
                idempotency.retention_hours,
                idempotency.purge_interval_s,
                idempotency.purge_batch,
                self._stop,
            ),
            Policy.RESTART,
        )

    async def run(self) -> int:
        await self.http.start()
        log.info(
            "order-sync starting",
            extra={
                "fields": {
                    "pipelines": ",".join(p.name for p in self.pipelines.all),
                    "http_port": self.http.port,
                    "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
                }
            },
        )
        try:
            if self.connection_files is not None:
                # Before any delivery: an event for a file's connection must not find it missing.
                await connectionfiles.apply_scan(self.connection_files, self.connections, first=True)
                if self._freeze_gc:
                    gc.collect()
                    gc.freeze()
            await self._open_store()
            await self._start_publisher()
            if self._stop.is_set():
                return 0
            # Pauses first: a paused target must not see a request between start-up and the
            # control topic's records (at most CONTROL_CATCH_UP_S when Kafka is slow).
            self._start_background_tasks()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.control.caught_up.wait(), CONTROL_CATCH_UP_S)
            await self.pipelines.start()
            await self.pipelines.run()
            return 0
        finally:
            await self.supervisor.stop()
            with contextlib.suppress(KafkaError):
                await self.publisher.stop()
            await self.transport.close()
            await self.store.close()
            await self.http.stop()
            log.info("order-sync stopped")


async def serve(settings: Settings) -> int:
    # Its Kafka clients share one SSL context, its files read here in a thread, not on the loop.
    await load_ssl_context(settings.kafka)
    connector = Connector(settings, freeze_gc=True)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, connector.request_stop)
    return await connector.run()
