"""A generator of realistic canonical events: several versions per order, cancellations, stale
replays, a few unmappable and malformed ones. Used by `order-sync demo` and the benchmarks."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from connector.models import to_rfc3339

_FIRST = ["John", "Amélie", "Søren", "Zoë", "Hiroshi", "María", "Olusegun", "Chloé", "Björn", "Priya"]
_LAST = ["Smith", "Dubois", "Ødegaard", "Müller", "Tanaka", "García", "Adeyemi", "Núñez", "Larsen", "Rao"]
_CITIES = [
    ("Ridgewood", "NJ", "US", "07450"),
    ("Toronto", "ON", "CA", "M5V 2T6"),
    ("Lyon", None, "FR", "69002"),
]
_CARRIERS = [
    ("ups", "ups_standard", "Standard"),
    ("fedex", "fedex_2day", "2 Day"),
    ("usps", "usps_priority", "Priority"),
]


@dataclass
class SampleSet:
    """Messages to publish in order, with what they should produce."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: Valid events (event_id -> targeted platform names).
    targets: dict[str, list[str]] = field(default_factory=dict)
    malformed: int = 0
    #: With several connections: the connection each (event_id, platform) names (absent: `default`).
    connections: dict[tuple[str, str], str] = field(default_factory=dict)


def connection_names(count: int) -> list[str]:
    """The accounts of each platform when orders are spread over `count`: `default`, conn1, conn2, ..."""
    return ["default", *(f"conn{k}" for k in range(1, count))]


def _address(rng: random.Random, *, drop_state: bool = False) -> dict[str, Any]:
    city, state, country, postal = rng.choice(_CITIES)
    return {
        "first_name": rng.choice(_FIRST),
        "middle_name": None,
        "last_name": rng.choice(_LAST),
        "company": rng.choice([None, "Acme Corp", "VU Custom"]),
        "line1": f"{rng.randint(1, 999)} Main St",
        "line2": rng.choice(["", "Suite 5", None]),
        "city": city,
        "state": None if drop_state else state,
        "region": None,
        "postal_code": postal,
        "country": country,
        "phone": f"201{rng.randint(1000000, 9999999)}",
        "email": None,
        "fax": None,
        "instructions": rng.choice([None, "Leave at the door"]),
    }


def _event(
    rng: random.Random, order_number: str, version: int, targets: dict[str, Any], status: str, base: datetime
) -> dict[str, Any]:
    carrier, code, description = rng.choice(_CARRIERS)
    lines: list[dict[str, Any]] = [
        {
            "line_id": str(i),
            "sku": f"SKU{rng.randint(100, 999)}",
            "product_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "quantity": rng.randint(1, 5),
            "unit_price": f"{rng.randint(1, 200)}.{rng.randint(0, 99):02d}",
            "requested_date": None,
            "tags": [],
            "attributes": {},
        }
        for i in range(rng.randint(1, 4))
    ]
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "event_type": "order.changed",
        "schema_version": 1,
        "occurred_at": to_rfc3339(base + timedelta(seconds=version)),
        "order": {
            "order_number": order_number,
            "version": version,
            "status": status,
            "order_date": to_rfc3339(base),
            "currency": "USD",
            "customer_note": rng.choice([None, "Gift wrap, please", f"change #{version}"]),
            "purchase_order_number": f"po-{order_number}",
            "sales_order_number": f"so-{order_number}",
            "external_ref": None,
            "ship_method": {"carrier": carrier, "code": code, "description": description},
            "ship_by_date": None,
            "deliver_by_date": None,
            "shipping_address": _address(rng),
            "billing_address": rng.choice([None, _address(rng)]),
            "lines": lines,
            "tags": ["demo"],
            "attributes": {},
            "attachments": [],
        },
        "targets": targets,
    }


def _targets(rng: random.Random, index: int) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    if rng.random() < 0.9:
        targets["vucustom"] = rng.choice([{"id": 1000 + index}, {}])
    if rng.random() < 0.8:
        targets["sellercloud"] = {"order_id": 5_000_000 + index, "company_id": 12}
    if rng.random() < 0.8:
        targets["elasticpath"] = {"order_id": str(uuid.UUID(int=rng.getrandbits(128)))}
    if rng.random() < 0.8 or not targets:
        targets["ventmere"] = {
            "order_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "account_id": "1ac48942-405a-4841-a7d8-708f50dbe1ad",
        }
    return targets


def generate(
    count: int, seed: int = 7, *, unmappable: bool = True, malformed: bool = True, connections: int = 1
) -> SampleSet:
    """`count` messages: orders of 1-4 versions, about 5% cancellations, 2% stale replays,
    1% unmappable (a US address without a state), 1% malformed; with `connections` > 1, each order
    lives on one of that many accounts of each platform (`connection_names`), round robin."""
    rng = random.Random(seed)
    names = connection_names(connections)
    base = datetime(2024, 1, 2, 7, 0, tzinfo=UTC)
    samples = SampleSet()
    index = 0
    while len(samples.messages) < count:
        order_number = f"ord-{seed}-{index:06d}"
        targets = _targets(rng, index)
        for shift, target in enumerate(targets.values()):
            if (name := names[(index + shift) % len(names)]) != "default":
                target["connection"] = name
        versions = rng.randint(1, 4)
        for version in range(1, versions + 1):
            if len(samples.messages) >= count:
                break
            roll = rng.random()
            key = order_number.encode()
            if malformed and roll < 0.01:
                samples.messages.append((key, b'{"event_id": "broken", "order": {'))
                samples.malformed += 1
                continue
            status = "cancelled" if version == versions and rng.random() < 0.05 else "open"
            event = _event(rng, order_number, version, targets, status, base)
            if unmappable and 0.01 <= roll < 0.02:
                event["order"]["shipping_address"]["country"] = "US"
                event["order"]["shipping_address"]["state"] = None
            samples.messages.append((key, orjson.dumps(event)))
            samples.targets[event["event_id"]] = list(targets)
            samples.connections.update(
                {(event["event_id"], p): t["connection"] for p, t in targets.items() if "connection" in t}
            )
            if version > 1 and rng.random() < 0.02 and len(samples.messages) < count:
                # An old version re-sent under a new event id: applied versions guard against it.
                stale = _event(rng, order_number, version - 1, targets, "open", base)
                samples.messages.append((key, orjson.dumps(stale)))
                samples.targets[stale["event_id"]] = list(targets)
                samples.connections.update(
                    {(stale["event_id"], p): t["connection"] for p, t in targets.items() if "connection" in t}
                )
        index += 1
    return samples
