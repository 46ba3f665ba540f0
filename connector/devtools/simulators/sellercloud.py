"""Sellercloud's "Update Order": JWT from POST /api/token, PUT /api/Orders/{id}, 400 for invalid values.

Stricter than the real service in one way, to catch mapping bugs: fields the page does not list
are refused instead of ignored. Errors carry `Message`, as ASP.NET answers them.

`limit` may hold Sellercloud's quota (`WindowQuota(10_800, 3600)`: 10,800 requests an hour per
client IP, across every endpoint) or a test's harsher `ThrottleAfterEvery`; beyond it every
request is answered 429 with `{"Error": "Too many requests.", "RateLimitResetTime": "<UTC>"}`
and no `Retry-After`, until that time.
"""

from __future__ import annotations

import email.utils
import hmac
import re
import time
from datetime import UTC, datetime
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

INVALID = 400
#: Top-level fields of the page's request body, with their JSON types (None always allowed).
ORDER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "CompanyId": int,
    "CustomerId": int,
    "OrderSource": str,
    "OrderSubType": str,
    "SalesRep1": int,
    "CurrencyCode": str,
    "DisableInventoryCount": bool,
    "ShippingAddress": dict,
    "BillingAddress": dict,
}
ADDRESS_REQUIRED = frozenset({"FirstName", "LastName", "ZipCode", "City", "Country", "AddressLine1"})
ADDRESS_FIELDS = ADDRESS_REQUIRED | {
    "MiddleName",
    "Business",
    "AddressLine2",
    "Fax",
    "Region",
    "State",
    "Phone",
}
_TWO_LETTERS = re.compile(r"[A-Z]{2}")


class SellercloudSimulator(PlatformSimulator):
    platform = Platform.SELLERCLOUD
    mount = "/sellercloud/rest"

    def __init__(
        self,
        *,
        username: str = "sim-sellercloud-user",
        password: str = "sim-sellercloud-password",
        token_lifetime_s: float = 3600.0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.username = username
        self.password = password
        self.tokens = TokenIssuer(token_lifetime_s)
        #: Orders by id: the last body applied to each, field by field.
        self.orders: dict[int, dict[str, Any]] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/token", self._token, name=TOKEN_ROUTE)
        router.add_put("/api/Orders/{order_id}", self._update_order)

    def refusal_body(self, refusal: Refusal) -> Any:
        # ASP.NET's shape: a message, and ModelState naming the offending field.
        body: dict[str, Any] = {"Message": refusal.message}
        if refusal.field is not None:
            body["ModelState"] = {refusal.field: [refusal.message]}
        return body

    def connector_settings(self, base_url: str) -> dict[str, str]:
        return {"base_url": base_url, "username": self.username, "password": self.password}

    def limit_answer(self, until: float) -> web.StreamResponse:
        reset = datetime.fromtimestamp(time.time() + (until - time.monotonic()), UTC)
        body = {"Error": "Too many requests.", "RateLimitResetTime": reset.isoformat(timespec="milliseconds")}
        return web.json_response(
            {**body, "RateLimitResetTime": body["RateLimitResetTime"][:-6] + "Z"}, status=429
        )

    def seed_order(self, order_id: int) -> dict[str, Any]:
        return self.orders.setdefault(order_id, {"ID": order_id})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("Username"), str):
            raise Refusal(400, "Username", "Username and Password are required")
        password = body.get("Password")
        if not (
            isinstance(password, str)
            and hmac.compare_digest(body["Username"], self.username)
            & hmac.compare_digest(password, self.password)
        ):
            raise Refusal(401, None, "The user name or password is incorrect.")
        token = self.tokens.issue()
        return web.json_response(
            {
                "access_token": token.value,
                "token_type": "bearer",
                "expires_in": token.lifetime_number,
                ".issued": email.utils.format_datetime(token.issued_at, usegmt=True),
                ".expires": email.utils.format_datetime(token.expires_on, usegmt=True),
            }
        )

    async def _update_order(self, request: web.Request) -> web.StreamResponse:
        raw_id = request.match_info["order_id"]
        self.note_order(request, raw_id)
        if not self.tokens.bearer_is_valid(request.headers.get("Authorization")):
            raise Refusal(401, None, "Not Valid Token")
        if not re.fullmatch(r"-?[0-9]+", raw_id):
            raise Refusal(INVALID, "id", f"The value '{raw_id}' is not valid.")
        order_id = int(raw_id)
        body = expect_object(await json_body(request), "body", INVALID)
        expect_keys(body, frozenset(ORDER_FIELDS), "", INVALID)
        for name, kind in ORDER_FIELDS.items():
            value = body.get(name)
            # bool is an int in Python; a JSON true is no company id.
            if value is not None and (
                not isinstance(value, kind) or (kind is int and isinstance(value, bool))
            ):
                raise Refusal(INVALID, name, f"{name} has the wrong type")
        for name in ("ShippingAddress", "BillingAddress"):
            if body.get(name) is not None:
                _check_address(expect_object(body[name], name, INVALID), name)
        order = self.lookup(self.orders, order_id, lambda: {"ID": order_id})
        # "Do not provide or set to null if no update is needed": nulls leave a field alone.
        order.update({name: value for name, value in body.items() if value is not None})
        return web.json_response(order)


def _check_address(address: dict[str, Any], where: str) -> None:
    # A full replacement: every field must be sent, required ones with a value.
    missing = sorted(ADDRESS_FIELDS - set(address))
    if missing:
        raise Refusal(
            INVALID, f"{where}.{missing[0]}", f"{where}.{missing[0]} is missing (send the whole address)"
        )
    expect_keys(address, ADDRESS_FIELDS, where, INVALID)
    for name in sorted(ADDRESS_FIELDS):
        expect_string(
            address[name], f"{where}.{name}", INVALID, nullable=True, required=name in ADDRESS_REQUIRED
        )
    if not _TWO_LETTERS.fullmatch(address["Country"]):
        raise Refusal(INVALID, f"{where}.Country", f"{where}.Country must be a two-letter country code")
    if address["Country"] in ("US", "CA"):
        expect_string(address["State"], f"{where}.State", INVALID, required=True)
