"""`Pauses`, the one owner of "is this target paused", on virtual time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from connector.control.pauses import Pauses
from connector.control.records import ControlAction, ControlRecord, Target
from connector.models import Platform
from connector.observability.metrics import Metrics
from tests.policies.virtual_time import run_virtual

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
SC = Platform.SELLERCLOUD


def virtual_clock() -> datetime:
    return EPOCH + timedelta(seconds=asyncio.get_running_loop().time())


def record(action: ControlAction, target: Target, until_s: float | None = None) -> ControlRecord:
    until = virtual_clock() + timedelta(seconds=until_s) if until_s is not None else None
    return ControlRecord(
        action=action, target=str(target), by="ops", at=virtual_clock(), reason="r", until=until
    )


def gauge(metrics: Metrics, connection: str) -> float | None:
    return metrics.registry.get_sample_value(
        "order_sync_paused", {"platform": "sellercloud", "connection": connection}
    )


def test_a_platform_pause_holds_every_connection_and_a_connection_pause_only_its_own() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        pauses = Pauses(metrics, clock=virtual_clock)
        eu = Target(platform=SC, connection="eu")
        pauses.apply(eu, record(ControlAction.PAUSE, eu))
        assert pauses.paused(SC, "eu") is not None and pauses.paused(SC, "default") is None
        assert pauses.platform_paused(SC) is None
        whole = Target(platform=SC)
        pauses.apply(whole, record(ControlAction.PAUSE, whole))
        assert pauses.paused(SC, "default") is not None and pauses.platform_paused(SC) is not None
        assert gauge(metrics, "_all") == 1 and gauge(metrics, "eu") == 1
        pauses.apply(whole, record(ControlAction.RESUME, whole))
        assert pauses.paused(SC, "default") is None and pauses.paused(SC, "eu") is not None
        assert gauge(metrics, "_all") == 0

    run_virtual(scenario())


def test_a_pause_until_ends_at_its_time_and_wakes_who_waits() -> None:
    async def scenario() -> None:
        pauses = Pauses(Metrics(), clock=virtual_clock)
        changes: list[float] = []
        pauses.on_change(lambda: changes.append(asyncio.get_running_loop().time()))
        eu = Target(platform=SC, connection="eu")
        pauses.apply(eu, record(ControlAction.PAUSE, eu, until_s=12))
        waiting = asyncio.ensure_future(pauses.wait_resumed(SC, "eu"))
        await asyncio.sleep(11.9)
        assert not waiting.done() and pauses.paused(SC, "eu") is not None
        await asyncio.wait_for(waiting, 1)
        assert asyncio.get_running_loop().time() == 12
        assert pauses.paused(SC, "eu") is None and pauses.all() == []
        assert changes == [0, 12]

    run_virtual(scenario())


def test_the_same_record_twice_changes_nothing_and_an_expired_pause_is_not_applied() -> None:
    async def scenario() -> None:
        pauses = Pauses(Metrics(), clock=virtual_clock)
        changes: list[int] = []
        pauses.on_change(lambda: changes.append(1))
        eu = Target(platform=SC, connection="eu")
        pause = record(ControlAction.PAUSE, eu)
        pauses.apply(eu, pause)
        pauses.apply(eu, pause)  # a replica re-reading the control topic
        assert len(changes) == 1
        await asyncio.sleep(5)
        old = Target(platform=SC, connection="old")
        pauses.apply(
            old, ControlRecord(action=ControlAction.PAUSE, target=str(old), by="ops", at=EPOCH, until=EPOCH)
        )
        assert pauses.paused(SC, "old") is None

    run_virtual(scenario())
