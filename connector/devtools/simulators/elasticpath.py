"""Elastic Path's "Update an Order": client-credentials token, PUT /v2/orders/{id}, order state rules.

`data` must be exactly one of the spec's three shapes (oneOf): an address/number update
(`shipping_address` required, `order_number` optional), a cancel (`status`, only `cancelled`) or
a fulfilment (`shipping`, only `fulfilled`); `external_ref` (at most 64 characters) may go in
any. A body mixing shapes, or matching none, is 422 "Failed Validation", as are nulls in an
address. The page's state rules hold: a fulfilled or a cancelled order accepts no change (422),
and only a paid order can be fulfilled (422). Every order the simulator creates on first sight
is paid (`default_payment`); `seed_order(..., payment="unpaid")` makes one that is not.
`GET /v2/orders/{id}` answers an order's state. `limit` may hold the store's requests-per-second
limit (`RequestsPerSecond`), answered 429 beyond it. Errors are JSON:API
`{"errors": [{"status", "title", "detail"}]}`.
"""

from __future__ import annotations

import copy
import hmac
import time
from typing import Any

from aiohttp import web

from connector.devtools.simulators.base import (
    TOKEN_ROUTE,
    PlatformSimulator,
    Refusal,
    expect_keys,
    expect_object,
    expect_string,
    json_body,
)
from connector.devtools.simulators.tokens import TokenIssuer
from connector.models import Platform

MALFORMED = 400
INVALID = 422
EXTERNAL_REF_MAX = 64
#: The keys of each shape of `data` besides `type` and `external_ref`, which every shape allows.
SHAPES: dict[str, frozenset[str]] = {
    "update": frozenset({"order_number", "shipping_address"}),
    "cancel": frozenset({"status"}),
    "fulfil": frozenset({"shipping"}),
}
DATA_FIELDS = frozenset({"type", "external_ref"}).union(*SHAPES.values())
ADDRESS_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "phone_number",
        "company_name",
        "line_1",
        "line_2",
        "city",
        "county",
        "region",
        "postcode",
        "country",
        "instructions",
    }
)
TITLES = {
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    INVALID: "Failed Validation",
    429: "Too Many Requests",
}


class ElasticPathSimulator(PlatformSimulator):
    platform = Platform.ELASTICPATH
    mount = "/elasticpath"

    def __init__(
        self,
        *,
        client_id: str = "sim-elasticpath-client",
        client_secret: str = "sim-elasticpath-secret",
        token_lifetime_s: float = 3600.0,
        default_payment: str = "paid",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.client_id = client_id
        self.client_secret = client_secret
        self.tokens = TokenIssuer(token_lifetime_s)
        #: Payment status of orders created on first sight.
        self.default_payment = default_payment
        #: Orders by id, in Elastic Path's shape (`status`, `payment`, `shipping`, ...).
        self.orders: dict[str, dict[str, Any]] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/oauth/access_token", self._token, name=TOKEN_ROUTE)
        router.add_put("/v2/orders/{order_id}", self._update_order)
        router.add_get("/v2/orders/{order_id}", self._get_order)

    def refusal_body(self, refusal: Refusal) -> Any:
        title = TITLES.get(refusal.status, "Error")
        detail = "write conflict, try again" if refusal.status == 409 else refusal.message
        error: dict[str, Any] = {"status": refusal.status, "title": title, "detail": detail}
        if refusal.field is not None:
            error["source"] = refusal.field
        return {"errors": [error]}

    def connector_settings(self, base_url: str) -> dict[str, str]:
        return {"base_url": base_url, "client_id": self.client_id, "client_secret": self.client_secret}

    def seed_order(
        self, order_id: str, *, payment: str = "paid", shipping: str = "unfulfilled", status: str = "complete"
    ) -> dict[str, Any]:
        """Register an order in a given state (e.g. unpaid, or already fulfilled)."""
        order = self._new_order(order_id)
        order.update(payment=payment, shipping=shipping, status=status)
        self.orders[order_id] = order
        return order

    def _new_order(self, order_id: str) -> dict[str, Any]:
        status = "complete" if self.default_payment == "paid" else "incomplete"
        return {
            "type": "order",
            "id": order_id,
            "status": status,
            "payment": self.default_payment,
            "shipping": "unfulfilled",
            "order_number": "",
            "external_ref": "",
            "shipping_address": dict.fromkeys(sorted(ADDRESS_FIELDS), ""),
        }

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            raise Refusal(MALFORMED, "grant_type", "grant_type must be client_credentials")
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if not (
            isinstance(client_id, str)
            and isinstance(client_secret, str)
            and hmac.compare_digest(client_id, self.client_id)
            & hmac.compare_digest(client_secret, self.client_secret)
        ):
            raise Refusal(401, None, "invalid client credentials")
        token = self.tokens.issue()
        return web.json_response(
            {
                "access_token": token.value,
                "token_type": "Bearer",
                "expires_in": token.lifetime_number,
                "expires": int(time.time() + token.lifetime_s),
                "identifier": "client_credentials",
            }
        )

    def _authorize(self, request: web.Request) -> None:
        if not self.tokens.bearer_is_valid(request.headers.get("Authorization")):
            raise Refusal(401, None, "Unable to validate access token")

    async def _get_order(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        self.note_order(request, order_id)
        self._authorize(request)
        if order_id not in self.orders:
            raise Refusal(404, None, f"order {order_id} not found")
        return web.json_response({"data": self.orders[order_id]})

    async def _update_order(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        self.note_order(request, order_id)
        self._authorize(request)
        body = expect_object(await json_body(request), "body", MALFORMED)
        expect_keys(body, frozenset({"data"}), "", MALFORMED)
        data = expect_object(body.get("data"), "data", MALFORMED)
        shape = _validate(data)
        order = self.lookup(self.orders, order_id, lambda: self._new_order(order_id))
        if order["shipping"] == "fulfilled":
            raise Refusal(INVALID, None, "Cannot update an order that has been fulfilled")
        if order["status"] == "cancelled":
            raise Refusal(INVALID, None, "Cannot update an order that has been cancelled")
        if shape == "fulfil" and order["payment"] != "paid":
            raise Refusal(INVALID, "data.shipping", "Only paid orders can be fulfilled")
        updated = copy.deepcopy(order)
        for name in ("order_number", "external_ref", "status", "shipping"):
            if name in data:
                updated[name] = data[name]
        if "shipping_address" in data:
            updated["shipping_address"].update(data["shipping_address"])
        self.orders[order_id] = updated
        return web.json_response({"data": updated})

    def limit_answer(self, until: float) -> web.StreamResponse:
        # No Retry-After: the client is told only that it went faster than the store allows.
        refusal = Refusal(429, None, "You have exceeded the request limit of your store")
        return web.json_response(self.refusal_body(refusal), status=429)


def _validate(data: dict[str, Any]) -> str:
    """Check `data` against the spec's oneOf; return the shape it matches."""
    expect_keys(data, DATA_FIELDS, "data", INVALID)
    if data.get("type") != "order":
        raise Refusal(INVALID, "data.type", "data.type must be order")
    matched = [name for name, keys in SHAPES.items() if keys & data.keys()]
    if len(matched) > 1:
        raise Refusal(
            INVALID,
            "data",
            f"data must match exactly one of update, cancel, fulfil; it mixes {' and '.join(matched)}",
        )
    if not matched or (matched == ["update"] and "shipping_address" not in data):
        raise Refusal(INVALID, "data.shipping_address", "data.shipping_address is required")
    for name in ("order_number", "external_ref"):
        if name in data:
            expect_string(data[name], f"data.{name}", INVALID)
    if len(data.get("external_ref", "")) > EXTERNAL_REF_MAX:
        raise Refusal(
            INVALID, "data.external_ref", f"external_ref must be at most {EXTERNAL_REF_MAX} characters"
        )
    if "shipping_address" in data:
        address = expect_object(data["shipping_address"], "data.shipping_address", INVALID)
        expect_keys(address, ADDRESS_FIELDS, "data.shipping_address", INVALID)
        for name, value in address.items():
            expect_string(value, f"data.shipping_address.{name}", INVALID)
    if "status" in data and data["status"] != "cancelled":
        raise Refusal(INVALID, "data.status", "data.status must be cancelled")
    if "shipping" in data and data["shipping"] != "fulfilled":
        raise Refusal(INVALID, "data.shipping", "data.shipping must be fulfilled")
    return matched[0]
