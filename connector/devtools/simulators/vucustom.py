"""VU Custom's "Update an order": Basic auth with Admin API keys, `?id=` or `?order_number=`.

Answers the full order object, in the page's shape.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
from typing import Any

from aiohttp import web

from connector.devtools.simulators.base import (
    PlatformSimulator,
    Refusal,
    expect_keys,
    expect_object,
    expect_string,
    json_body,
)
from connector.models import Platform, to_rfc3339, utc_now

#: The fields the connector may change (the platform's update-order page); its 422 answers anything else.
UPDATABLE = frozenset(
    {
        "note",
        "purchase_order_number",
        "sales_order_number",
        "ship_method_carrier",
        "ship_method_code",
        "ship_method_description",
    }
)
INVALID = 422

#: The order of the page's 200 example; new orders start as a copy of it.
_ADDRESS = {
    "account_number": "SHPTO123",
    "address_1": "123 Main St",
    "address_2": "",
    "city": "Ridgewood",
    "company_name": "VU Custom",
    "state_region": "NJ",
    "country": "US",
    "first_name": "John",
    "last_name": "Smith",
    "phone": "2011231234",
    "postal_code": "07450",
    "created_at": "2022-10-31T01:54:56.271Z",
    "updated_at": "2022-10-31T01:54:56.271Z",
}
ORDER_TEMPLATE: dict[str, Any] = {
    "id": 432,
    "order_number": "ord-12s3425",
    "order_date": "2022-10-31T01:54:56.271Z",
    "note": None,
    "custom_attributes": {},
    "purchase_order_number": "po-123",
    "sales_order_number": "so-123",
    "ship_method_carrier": "ups",
    "ship_method_description": "Standard",
    "ship_method_code": "ups_standard",
    "tags": ["tag1", "tag2"],
    "created_at": "2023-12-19T08:10:53.424Z",
    "updated_at": "2024-01-02T07:26:41.193Z",
    "ship_to": {"id": 13, **_ADDRESS},
    "sold_to": {"id": 17, **_ADDRESS, "account_number": "SLDTO123"},
    "order_lines": [
        {
            "id": 396,
            "sku": "SKU123",
            "customer_requested_date": "2022-10-31T01:54:56.271Z",
            "estimated_arrival_date": "2022-10-31T01:54:56.271Z",
            "line_reference": "59861396",
            "price": "70.0",
            "quantity": 1,
            "recipe_token": "1609c0e8",
            "status": "not_routed",
            "tags": ["tag1", "tag2"],
            "ex_factory_date": {
                "calculated": "2022-10-31T01:54:56.271Z",
                "requested": None,
                "confirmed": None,
                "changes": [],
            },
            "upc": None,
            "custom_attributes": {},
            "factory_code": None,
            "created_at": "2023-12-19T08:10:53.431Z",
            "updated_at": "2023-12-19T08:10:53.431Z",
        }
    ],
}


class VuCustomSimulator(PlatformSimulator):
    platform = Platform.VUCUSTOM
    mount = "/vucustom"

    def __init__(
        self, *, api_key: str = "sim-vucustom-key", api_secret: str = "sim-vucustom-secret", **common: Any
    ) -> None:
        super().__init__(**common)
        self.api_key = api_key
        self.api_secret = api_secret
        #: Orders by id.
        self.orders: dict[int, dict[str, Any]] = {}
        self._ids_by_number: dict[str, int] = {}
        self._next_id = 1000

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_put("/api/v1/orders", self._update_order)

    def refusal_body(self, refusal: Refusal) -> Any:
        if refusal.field is None:
            return {"error": refusal.message}
        return {"error": refusal.message, "errors": {refusal.field: [refusal.message]}}

    def connector_settings(self, base_url: str) -> dict[str, str]:
        return {"base_url": base_url, "api_key": self.api_key, "api_secret": self.api_secret}

    def seed_order(self, order_id: int, order_number: str | None = None) -> dict[str, Any]:
        """Register an order (for `strict_ids` runs); returns its state."""
        order = self._new_order(order_id, order_number or f"ord-{order_id}")
        self.orders[order_id] = order
        self._ids_by_number[order["order_number"]] = order_id
        return order

    def _new_order(self, order_id: int, order_number: str) -> dict[str, Any]:
        order = copy.deepcopy(ORDER_TEMPLATE)
        order.update(id=order_id, order_number=order_number, created_at=to_rfc3339(utc_now()))
        return order

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(key, self.api_key) & hmac.compare_digest(secret, self.api_secret)

    async def _update_order(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            raise Refusal(401, None, "The client doesn't have correct authentication credentials.")
        order = self._addressed_order(request)
        body = expect_object(await json_body(request, INVALID), "body", INVALID)
        expect_keys(body, frozenset({"order"}), "", INVALID)
        changes = expect_object(body.get("order"), "order", INVALID)
        expect_keys(changes, UPDATABLE, "order", INVALID)
        for name, value in changes.items():
            expect_string(value, f"order.{name}", INVALID, nullable=True)
        order.update(changes)
        order["updated_at"] = to_rfc3339(utc_now())
        return web.json_response({"order": order})

    def _addressed_order(self, request: web.Request) -> dict[str, Any]:
        raw_id = request.query.get("id")
        number = request.query.get("order_number")
        if raw_id:
            self.note_order(request, raw_id)
            if not raw_id.isascii() or not raw_id.isdigit():
                raise Refusal(404, "id", f"no order with id {raw_id!r}")
            order_id = int(raw_id)
            return self.lookup(self.orders, order_id, lambda: self._new_order(order_id, f"ord-{order_id}"))
        if number:
            self.note_order(request, number)

            def create() -> int:
                self._next_id += 1
                self.orders[self._next_id] = self._new_order(self._next_id, number)
                return self._next_id

            return self.orders[self.lookup(self._ids_by_number, number, create)]
        raise Refusal(INVALID, "id", "id or order_number is required")
