"""Benchmark input: the demo's sample events, every one targeting all four platforms.

`connector.devtools.samples` gives realistic orders (1-4 versions each, cancellations, 2% stale replays);
here every order is addressed on every platform, so each event is exactly four deliveries.
Different seeds give different order numbers, so runs never touch each other's simulated orders.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from connector.devtools.samples import generate

PLATFORM_COUNT = 4
_NAMESPACE = uuid.UUID("1ac48942-405a-4841-a7d8-708f50dbe1ad")


@dataclass(frozen=True, slots=True)
class BenchEvent:
    event_id: str
    key: bytes
    value: bytes


def _targets(order_number: str, serial: int) -> dict[str, Any]:
    return {
        "vucustom": {"id": 1_000_000 + serial},
        "sellercloud": {"order_id": 5_000_000 + serial, "company_id": 12},
        "elasticpath": {"order_id": str(uuid.uuid5(_NAMESPACE, f"ep:{order_number}"))},
        "ventmere": {
            "order_id": str(uuid.uuid5(_NAMESPACE, f"vm:{order_number}")),
            "account_id": str(_NAMESPACE),
        },
    }


def connection_name(serial: int, connections: int) -> str:
    """The connection an order lives on when orders are spread over `connections` per platform."""
    index = serial % connections
    return "default" if index == 0 else f"conn{index}"


def bench_events(count: int, seed: int, connections: int = 1) -> list[BenchEvent]:
    """`count` valid events in publishing order (several per order, keyed by order number); with
    `connections` > 1, each order lives on one of that many connections of every platform."""
    samples = generate(count, seed=seed, unmappable=False, malformed=False)
    serials: dict[str, int] = {}
    events: list[BenchEvent] = []
    for key, raw in samples.messages:
        document = orjson.loads(raw)
        order_number = document["order"]["order_number"]
        serial = serials.setdefault(order_number, seed * 10_000_000 + len(serials))
        document["targets"] = _targets(order_number, serial)
        if connections > 1 and (name := connection_name(serial, connections)) != "default":
            for target in document["targets"].values():
                target["connection"] = name
        events.append(BenchEvent(document["event_id"], key, orjson.dumps(document)))
    return events


def spread_orders(events: list[BenchEvent]) -> list[BenchEvent]:
    """The same events with each order's versions far apart (round robin over orders).

    Each order's own events keep their order. The generator emits an order's 1-4 versions back
    to back; paced one by one, each would wait for the previous version's delivery (per-order
    ordering), which is the contract at work, not the connector's overhead.
    """
    by_order: dict[bytes, list[BenchEvent]] = {}
    for event in events:
        by_order.setdefault(event.key, []).append(event)
    spread: list[BenchEvent] = []
    for round_ in range(max((len(v) for v in by_order.values()), default=0)):
        spread.extend(versions[round_] for versions in by_order.values() if len(versions) > round_)
    return spread
