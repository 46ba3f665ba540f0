"""`ControlReader` against the test broker: every record from the beginning, bad ones ignored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from connector.config import load_settings
from connector.control.pauses import Pauses
from connector.control.reader import ControlReader
from connector.control.records import ControlAction, ControlRecord
from connector.devtools.broker import EmbeddedBroker
from connector.models import Platform
from connector.observability.metrics import Metrics
from tests.support.kafka import Topics, produce


def a_record(action: ControlAction, target: str, until: datetime | None = None) -> tuple[bytes, bytes]:
    record = ControlRecord(
        action=action, target=target, by="ops", at=datetime.now(UTC), reason="r", until=until
    )
    return target.encode(), record.encode()


async def test_a_replica_applies_the_whole_control_topic_before_it_is_caught_up_then_follows_it(
    broker: EmbeddedBroker, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    control = f"control.{topics.input}"
    settings = load_settings(
        None,
        {
            "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "ORDER_SYNC_KAFKA__CONTROL_TOPIC": control,
        },
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    # Written before the replica starts: a pause, a bad record, a pause then its resume.
    await produce(
        broker.bootstrap_servers,
        control,
        [
            a_record(ControlAction.PAUSE, "sellercloud/eu", later),
            (b"sellercloud", b"{not json"),
            a_record(ControlAction.PAUSE, "ventmere"),
            a_record(ControlAction.RESUME, "ventmere"),
        ],
    )
    pauses = Pauses(Metrics())
    reader = ControlReader(settings.kafka, pauses)
    running = asyncio.create_task(reader.run())
    try:
        await asyncio.wait_for(reader.caught_up.wait(), 20)
        assert [str(p.target) for p in pauses.all()] == ["sellercloud/eu"]
        assert pauses.paused(Platform.VENTMERE, "default") is None
        assert any("control record ignored" in r.getMessage() for r in caplog.records)
        # Then it follows: a record written now is applied within about a poll.
        await produce(broker.bootstrap_servers, control, [a_record(ControlAction.RESUME, "sellercloud/eu")])
        async with asyncio.timeout(10):
            while pauses.paused(Platform.SELLERCLOUD, "eu") is not None:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.05)
        assert pauses.all() == []
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
