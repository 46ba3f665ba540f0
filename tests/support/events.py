"""Canonical events for tests."""

from __future__ import annotations

import uuid
from typing import Any

import orjson


def make_event(
    order_number: str,
    version: int,
    targets: dict[str, dict[str, Any]] | None = None,
    *,
    event_id: str | None = None,
    status: str = "open",
    **order_fields: Any,
) -> dict[str, Any]:
    """A valid event; `customer_note` carries `v{version}` so servers can see the version order."""
    order: dict[str, Any] = {
        "order_number": order_number,
        "version": version,
        "status": status,
        "order_date": "2024-01-02T07:26:41.193Z",
        "currency": "USD",
        "customer_note": f"v{version}",
        "purchase_order_number": f"po-{order_number}",
        "sales_order_number": None,
        "external_ref": None,
        "ship_method": {"carrier": "ups", "code": "ups_standard", "description": "Standard"},
        "shipping_address": {
            "first_name": "John",
            "last_name": "Smith",
            "company": "VU Custom",
            "line1": "123 Main St",
            "line2": "",
            "city": "Ridgewood",
            "state": "NJ",
            "postal_code": "07450",
            "country": "US",
            "phone": "2011231234",
        },
        "billing_address": None,
        "lines": [
            {
                "line_id": "0",
                "sku": "SKU123",
                "product_id": "3775cc37-30e7-4579-a58e-c9adda6fac86",
                "quantity": 2,
                "unit_price": "9.99",
            }
        ],
        "tags": ["tag1"],
        "attributes": {},
        "attachments": [],
    }
    order.update(order_fields)
    if targets is None:
        targets = {
            "vucustom": {"order_number": order_number},
            "ventmere": {"order_id": order_number, "account_id": "1ac48942-405a-4841-a7d8-708f50dbe1ad"},
        }
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": "order.changed",
        "schema_version": 1,
        "occurred_at": "2024-01-02T07:26:41.193Z",
        "order": order,
        "targets": targets,
    }


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)
