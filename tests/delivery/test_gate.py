"""A connection's gate (`delivery/gate.py`): its decisions and its backlog, on virtual time."""

from __future__ import annotations

from types import SimpleNamespace

from connector.delivery.connections import UNKNOWN_CONNECTION_LABEL, ConnectionRegistry
from connector.delivery.gates import Gates
from connector.models import Platform
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor
from connector.platforms.transport import Transport


def held_gauge(metrics: Metrics, connection: str) -> float:
    value = metrics.registry.get_sample_value(
        "order_sync_held_deliveries", {"platform": "sellercloud", "connection": connection}
    )
    return value or 0.0


async def test_connections_no_configuration_has_share_one_unknown_gauge_that_sums_them() -> None:
    metrics = Metrics()
    registry = ConnectionRegistry([Platform.SELLERCLOUD], Transport(), Redactor([]), metrics)
    gates = Gates(Platform.SELLERCLOUD, SimpleNamespace(connections=registry), None, metrics, capacity=100)  # type: ignore[arg-type]
    for offset in range(3):
        gates.gate("removed-a").reserve(0, offset)
    for offset in range(3, 5):
        gates.gate("removed-b").reserve(1, offset)
    # The last writer does not win: the gauge is what both hold.
    assert held_gauge(metrics, UNKNOWN_CONNECTION_LABEL) == 5
    gates.gate("removed-b").unreserve(1)
    gates.gate("removed-b").unreserve(1)
    assert held_gauge(metrics, UNKNOWN_CONNECTION_LABEL) == 3
    assert gates.held_backlog() == {"removed-a": 3}
