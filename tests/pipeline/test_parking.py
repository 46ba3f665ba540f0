"""Parking's bookkeeping of held deliveries, without a store or a network."""

from __future__ import annotations

from connector.delivery.connections import UNKNOWN_CONNECTION_LABEL, ConnectionRegistry
from connector.models import Platform
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor
from connector.pipeline.parking import Parking
from connector.platforms.transport import Transport


def held_gauge(metrics: Metrics, connection: str) -> float:
    value = metrics.registry.get_sample_value(
        "order_sync_held_deliveries", {"platform": "sellercloud", "connection": connection}
    )
    return value or 0.0


async def test_connections_no_configuration_has_share_one_unknown_gauge_that_sums_them() -> None:
    metrics = Metrics()
    registry = ConnectionRegistry([Platform.SELLERCLOUD], Transport(), Redactor([]), metrics)
    parking = Parking(Platform.SELLERCLOUD, None, registry, metrics, capacity=100)  # type: ignore[arg-type]
    for offset in range(3):
        parking.reserve("removed-a", 0, offset)
    for offset in range(3, 5):
        parking.reserve("removed-b", 1, offset)
    # The last writer does not win: the gauge is what both hold.
    assert held_gauge(metrics, UNKNOWN_CONNECTION_LABEL) == 5
    parking.unreserve("removed-b", 1)
    parking.unreserve("removed-b", 1)
    assert held_gauge(metrics, UNKNOWN_CONNECTION_LABEL) == 3
    assert parking.held_backlog() == {"removed-a": 3}
