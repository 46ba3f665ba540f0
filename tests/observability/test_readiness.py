"""Issue 6: /readyz is 503 before the group is joined and during shutdown, 200 in between."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker, free_port
from connector.devtools.simulators.server import SimulatorSuite
from tests.support.events import make_event
from tests.support.kafka import produce_events
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]


async def _status(connector: ConnectorProcess, path: str) -> int:
    try:
        status, _ = await connector.get(path)
    except OSError:
        return 0
    return status


async def test_readiness_follows_the_group_and_shutdown(
    suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port, log_file=tmp_path / "broker.log")
    connector = connectors(
        {
            **suite.connector_env(),
            "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "ORDER_SYNC_KAFKA__GROUP_ID": "readiness",
            "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{tmp_path / 'store.db'}",
            "ORDER_SYNC_SHUTDOWN_TIMEOUT_S": "4",
        }
    )

    async def health_up() -> bool:
        return await _status(connector, "/healthz") == 200

    await connector.wait_until(health_up, 30, "/healthz")
    for _ in range(5):  # no broker yet: alive, not ready
        assert await _status(connector, "/readyz") == 503
        await asyncio.sleep(0.1)

    await broker.start()
    try:
        await create_topics_named(broker)
        await connector.wait_ready(60)
        suite.set_faults(hang_rate=1.0)  # deliveries now stay in flight until shutdown gives up on them
        await produce_events(broker.bootstrap_servers, "orders.changed", [make_event("ord-r", 1)])

        async def inflight() -> bool:
            # Held by the pipelines of the platforms it targets (hung requests), not by the intake.
            held = [
                await connector.metric("order_sync_inflight_events", {"pipeline": p})
                for p in ("intake", "vucustom", "ventmere")
            ]
            return held == [0, 1, 1]

        await connector.wait_until(inflight, 30, "an event in flight")
        connector.terminate()
        statuses = []
        assert connector.process is not None
        while connector.process.poll() is None:
            status = await _status(connector, "/readyz")
            if status:
                statuses.append(status)
            await asyncio.sleep(0.05)
        assert connector.process.returncode == 0
        assert statuses and set(statuses) == {503}, statuses
    finally:
        suite.reset_faults()
        broker.stop()


async def create_topics_named(broker: EmbeddedBroker) -> None:
    await broker.create_topics(
        ["orders.changed", "orders.sync.succeeded", "orders.sync.failed", "orders.changed.dlq"], partitions=2
    )
