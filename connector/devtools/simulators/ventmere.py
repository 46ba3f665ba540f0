"""Ventmere's "Update Order API": static bearer token + X-S2-Organization, PUT /order/{orderId}.

The page prescribes how "no value" is spelled for each field (null, "", {}, []); a body that
spells it otherwise, or lacks a required field, is answered 400 naming the field. Fields the
page does not show are refused too, to catch mapping bugs.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime, timedelta
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

INVALID = 400
ORDER_FIELDS = frozenset(
    {
        "accountId",
        "channelOrderId",
        "channelOrderIdAlt",
        "channelOrderIdAlt2",
        "channelShippingMethod",
        "shippingAddress",
        "billingAddress",
        "meta",
        "channelOrderDate",
        "currencyId",
        "shipByDate",
        "deliveryByDate",
        "customerNote",
        "items",
        "attachments",
    }
)
ADDRESS_FIELDS = (
    "name",
    "company",
    "address1",
    "address2",
    "city",
    "state",
    "postalCode",
    "countryId",
    "phone",
    "email",
)
ITEM_FIELDS = frozenset({"channelOrderItemId", "productId", "quantity", "unitPrice", "meta"})
ATTACHMENT_FIELDS = frozenset({"fileName", "path"})


class VentmereSimulator(PlatformSimulator):
    platform = Platform.VENTMERE
    mount = "/ventmere"

    def __init__(
        self,
        *,
        api_token: str = "sim-ventmere-token",
        organization_id: str = "95d73baf-76ba-4bea-86ac-1534c5e5d4aa",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.api_token = api_token
        self.organization_id = organization_id
        #: Orders by id, as answered (the page's response shape).
        self.orders: dict[str, dict[str, Any]] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_put("/order/{order_id}", self._update_order)

    def refusal_body(self, refusal: Refusal) -> Any:
        return {"status": refusal.status, "message": refusal.message, "field": refusal.field}

    def connector_settings(self, base_url: str) -> dict[str, str]:
        return {"base_url": base_url, "api_token": self.api_token, "organization_id": self.organization_id}

    def seed_order(self, order_id: str) -> dict[str, Any]:
        return self.orders.setdefault(order_id, self._new_order(order_id))

    def _new_order(self, order_id: str) -> dict[str, Any]:
        now = to_rfc3339(utc_now())
        return {
            "id": order_id,
            "organization": {"id": self.organization_id},
            "status": "UNFULFILLED",
            "assignStatus": "PENDING",
            "archived": False,
            "fulfillments": [],
            "createdAt": now,
            "updatedAt": now,
        }

    async def _update_order(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        self.note_order(request, order_id)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), self.api_token):
            raise Refusal(401, None, "invalid or missing access token")
        if not hmac.compare_digest(request.headers.get("X-S2-Organization", ""), self.organization_id):
            raise Refusal(403, "X-S2-Organization", "not a member of this organization")
        body = expect_object(await json_body(request), "body", INVALID)
        _validate(body)
        order = self.lookup(self.orders, order_id, lambda: self._new_order(order_id))
        order.update(_as_answered(body))
        order["updatedAt"] = to_rfc3339(utc_now())
        return web.json_response(order)


def _validate(body: dict[str, Any]) -> None:
    expect_keys(body, ORDER_FIELDS, "", INVALID)
    for name in ("accountId", "channelOrderId", "currencyId"):
        expect_string(body.get(name), name, INVALID, required=True)
    for name in ("channelOrderIdAlt", "channelOrderIdAlt2", "channelShippingMethod", "customerNote"):
        # Required or not, the page says "" when there is no value, never null.
        if name in body or name == "channelShippingMethod":
            expect_string(body.get(name), name, INVALID)
    if body.get("meta") is None:
        raise Refusal(INVALID, "meta", "meta is required; pass {} when there is no value")
    _expect_utc(body.get("channelOrderDate"), "channelOrderDate", nullable=False)
    for name in ("shipByDate", "deliveryByDate"):
        _expect_utc(body.get(name), name, nullable=True)
    for name in ("shippingAddress", "billingAddress"):
        if body.get(name) is not None:
            address = expect_object(body[name], name, INVALID)
            expect_keys(address, frozenset(ADDRESS_FIELDS), name, INVALID)
            for field in ADDRESS_FIELDS:
                expect_string(address.get(field), f"{name}.{field}", INVALID)
    items = body.get("items")
    if not isinstance(items, list):
        raise Refusal(INVALID, "items", "items is required; pass [] when there is no value")
    for index, item in enumerate(items):
        _check_item(expect_object(item, f"items[{index}]", INVALID), f"items[{index}]")
    attachments = body.get("attachments")
    if not isinstance(attachments, list):
        raise Refusal(INVALID, "attachments", "attachments is required; pass [] when there is no value")
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        expect_keys(expect_object(attachment, where, INVALID), ATTACHMENT_FIELDS, where, INVALID)
        for field in sorted(ATTACHMENT_FIELDS):
            expect_string(attachment.get(field), f"{where}.{field}", INVALID)


def _check_item(item: dict[str, Any], where: str) -> None:
    expect_keys(item, ITEM_FIELDS, where, INVALID)
    expect_string(item.get("channelOrderItemId"), f"{where}.channelOrderItemId", INVALID)
    expect_string(item.get("productId"), f"{where}.productId", INVALID)
    quantity = item.get("quantity")
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        raise Refusal(INVALID, f"{where}.quantity", f"{where}.quantity must be an integer")
    price = item.get("unitPrice")
    if not isinstance(price, int | float) or isinstance(price, bool):
        raise Refusal(INVALID, f"{where}.unitPrice", f"{where}.unitPrice must be a number")
    if item.get("meta") is None:
        raise Refusal(INVALID, f"{where}.meta", f"{where}.meta is required; pass {{}} when there is no value")


def _expect_utc(value: Any, where: str, *, nullable: bool) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str):
        raise Refusal(INVALID, where, f"{where} must be an RFC 3339 date-time in UTC")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Refusal(INVALID, where, f"{where} must be an RFC 3339 date-time in UTC") from None
    if moment.utcoffset() != timedelta(0):
        raise Refusal(INVALID, where, f"{where} must be in UTC")


def _as_answered(body: dict[str, Any]) -> dict[str, Any]:
    """The body in the page's response shape (products and attachments expanded)."""
    answered = {
        name: value for name, value in body.items() if name not in ("accountId", "items", "attachments")
    }
    answered["account"] = {"id": body["accountId"]}
    answered["deliverByDate"] = answered.pop("deliveryByDate", None)
    answered["items"] = [
        {
            "channelOrderItemId": item["channelOrderItemId"],
            "product": {"id": item["productId"]},
            "quantity": item["quantity"],
            "unitPrice": item["unitPrice"],
            "meta": item["meta"],
        }
        for item in body["items"]
    ]
    answered["attachments"] = [{"id": str(uuid.uuid4()), **attachment} for attachment in body["attachments"]]
    return answered
