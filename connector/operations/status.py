"""Each replica's status: published to the compacted status topic every `STATUS_INTERVAL_S` and on
every change of a pause, served read-only at `/status`, read back by `order-sync status`.

The document holds no secret: names, counts, states, reasons and times only. Per connection it
lists those with something to say (paused, circuit not closed, throttled, a held backlog, an error
in the last hour), with the count of the others, so that a thousand idle connections do not make
a large record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from connector.config import KafkaSettings
from connector.control.pauses import Pauses
from connector.control.reader import ensure_compacted_topic
from connector.delivery.connections import ConnectionRegistry
from connector.kafka.client import producer_options
from connector.pipeline.pipelines import Pipelines
from connector.policies.circuit import CircuitState

log = logging.getLogger(__name__)

#: An error older than this is no longer news in the status.
RECENT_ERROR_S = 3600.0


def package_version() -> str:
    with contextlib.suppress(PackageNotFoundError):
        return version("order-sync-connector")
    return "unknown"


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


class StatusReport:
    """Builds this replica's status document from the parts that know each piece."""

    def __init__(
        self,
        replica: str,
        pipelines: Pipelines,
        connections: ConnectionRegistry,
        pauses: Pauses,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.replica = replica
        self._pipelines = pipelines
        self._connections = connections
        self._pauses = pauses
        self._interval_s = interval_s
        self._clock = clock
        self._started_at = clock()
        self._version = package_version()

    def document(self) -> dict[str, Any]:
        now = self._clock()
        held: dict[tuple[str, str], int] = {}
        for platform, gates in self._pipelines.gates.items():
            for connection, count in gates.held_backlog().items():
                held[(platform.value, connection)] = count
        listed: list[dict[str, Any]] = []
        quiet = 0
        for platform, name, dispatcher in self._connections.items():
            platform_gates = self._pipelines.gates.get(platform)
            state = platform_gates.state(name) if platform_gates is not None else None
            if state is None:
                continue
            error = dispatcher.last_error
            recent = error if error is not None and now - error[1] < RECENT_ERROR_S else None
            held.pop((platform.value, name), None)
            entry: dict[str, Any] = {
                "platform": platform.value,
                "connection": name,
                "paused": state.paused.document() if state.paused else None,
                "circuit": state.circuit.value,
                "throttled_until": _iso(now + state.throttled_for_s) if state.throttled_for_s else None,
                "held_backlog": state.backlog,
                "last_error": {"message": recent[0][:300], "at": _iso(recent[1])} if recent else None,
            }
            notable = (
                entry["paused"]
                or state.circuit is not CircuitState.CLOSED
                or entry["throttled_until"]
                or entry["held_backlog"]
                or entry["last_error"]
            )
            if notable:
                listed.append(entry)
            else:
                quiet += 1
        # Backlogs of connections no longer configured (removed with deliveries waiting for them).
        for (platform_name, name), count in sorted(held.items()):
            listed.append(
                {"platform": platform_name, "connection": name, "held_backlog": count, "removed": True}
            )
        return {
            "replica": self.replica,
            "version": self._version,
            "started_at": _iso(self._started_at),
            "published_at": _iso(now),
            "interval_s": self._interval_s,
            "pipelines": [p.snapshot() for p in self._pipelines.all],
            "pauses": [p.document() for p in self._pauses.all()],
            "connections": listed,
            "connections_quiet": quiet,
        }


class StatusPublisher:
    """Publishes the report every interval and at once when a pause changes; until cancelled."""

    def __init__(self, settings: KafkaSettings, report: StatusReport, pauses: Pauses) -> None:
        self._settings = settings
        self._report = report
        self._changed = asyncio.Event()
        pauses.on_change(self._changed.set)

    async def run(self) -> None:
        await ensure_compacted_topic(self._settings, self._settings.status_topic)
        producer = AIOKafkaProducer(**producer_options(self._settings))
        started = False
        try:
            while True:
                if not started:
                    with contextlib.suppress(KafkaError):
                        await producer.start()
                        started = True
                if started:
                    try:
                        value = orjson.dumps(self._report.document())
                        await producer.send_and_wait(
                            self._settings.status_topic, value=value, key=self._report.replica.encode()
                        )
                    except KafkaError as exc:
                        log.warning("status not published: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self._settings.status_interval_s)
                self._changed.clear()
        finally:
            if started:
                with contextlib.suppress(KafkaError):
                    await producer.stop()
