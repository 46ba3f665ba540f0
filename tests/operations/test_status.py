"""The status document (`order-sync status`, `/status`): what it lists of each connection."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from connector.config import PlatformSettings
from connector.control.pauses import Pauses
from connector.control.records import ControlAction, ControlRecord, Target
from connector.delivery.connections import ConnectionRegistry
from connector.delivery.dispatcher import PlatformDispatcher
from connector.delivery.gates import Gates
from connector.models import Platform
from connector.observability.metrics import Metrics
from connector.operations.status import RECENT_ERROR_S, StatusReport

SC = Platform.SELLERCLOUD
NOW = 1_800_000_000.0


class Adapter:
    platform = SC


class Pipeline:
    def snapshot(self) -> dict[str, Any]:
        return {"name": "sellercloud", "lag": {"0": 3}}


class Pipelines:
    """The platform's real gates, with `backlog` parked deliveries per connection."""

    def __init__(self, registry: ConnectionRegistry, pauses: Pauses, backlog: dict[str, int]) -> None:
        runner = SimpleNamespace(connections=registry)
        gates = Gates(SC, runner, None, pauses, Metrics(), capacity=100)  # type: ignore[arg-type]
        for connection, count in backlog.items():
            for offset in range(count):
                gates.gate(connection).reserve(0, offset)
        self.gates = {SC: gates}
        self.all = [Pipeline()]


async def test_only_connections_with_something_to_say_are_listed() -> None:
    metrics = Metrics()
    pauses = Pauses(metrics)
    settings = PlatformSettings(base_url="https://sc.example", circuit_failure_threshold=1)
    names = ("default", "eu", "us", "quiet-1", "quiet-2", "old-error")
    dispatchers = {
        (SC, name): PlatformDispatcher(Adapter(), settings, metrics, name)  # type: ignore[arg-type]
        for name in names
    }
    eu = Target(platform=SC, connection="eu")
    pauses.apply(
        eu, ControlRecord(action=ControlAction.PAUSE, target="sellercloud/eu", by="ops", at=datetime.now(UTC))
    )
    dispatchers[(SC, "us")].circuit.record_failure()
    dispatchers[(SC, "old-error")].last_error = ("503 long ago", NOW - RECENT_ERROR_S - 1)
    dispatchers[(SC, "default")].last_error = ("503 just now", NOW - 5)
    registry = ConnectionRegistry.of(dispatchers)
    report = StatusReport(
        "replica-1",
        Pipelines(registry, pauses, {"default": 7, "gone": 4}),  # type: ignore[arg-type]
        registry,
        pauses,
        interval_s=5,
        clock=lambda: NOW,
    )
    document = report.document()
    listed = {entry["connection"]: entry for entry in document["connections"]}
    assert set(listed) == {"default", "eu", "us", "gone"}
    assert document["connections_quiet"] == 3  # quiet-1, quiet-2 and an error older than an hour
    assert listed["default"]["held_backlog"] == 7
    assert listed["default"]["last_error"]["message"] == "503 just now"
    assert listed["eu"]["paused"]["by"] == "ops"
    assert listed["us"]["circuit"] == "open"
    assert listed["gone"] == {
        "platform": "sellercloud",
        "connection": "gone",
        "held_backlog": 4,
        "removed": True,
    }
    assert document["pipelines"] == [{"name": "sellercloud", "lag": {"0": 3}}]
    assert [p["target"] for p in document["pauses"]] == ["sellercloud/eu"]
