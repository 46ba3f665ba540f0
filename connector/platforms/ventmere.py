"""Ventmere's "Update Order API" (PUT /order/{orderId}) with a static bearer token and organisation header.

Ventmere replaces the order with the body, so the body is always complete: every field of the
page's example, each "no value" spelled the way the page prescribes ("" for strings, {} for meta,
[] for attachments, null for optional dates and absent addresses).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from connector.config import PlatformSettings, VentmereSettings
from connector.errors import ConfigError, UnmappableError
from connector.models import Address, OrderChangedEvent, OrderLine, Platform, to_rfc3339
from connector.observability.redaction import Redactor
from connector.platforms.auth import Authenticator, StaticHeaders
from connector.platforms.base import PlatformAdapter
from connector.platforms.http import PlatformRequest, json_request, path_segment
from connector.platforms.transport import Transport


class VentmereAdapter(PlatformAdapter):
    platform = Platform.VENTMERE

    def build_request(self, event: OrderChangedEvent) -> PlatformRequest:
        target = event.targets.ventmere
        if target is None:
            raise UnmappableError("targets.ventmere", "the event does not target ventmere")
        if target.order_id is None:
            raise UnmappableError("targets.ventmere.order_id", "ventmere needs the order's id")
        if target.account_id is None:
            raise UnmappableError("targets.ventmere.account_id", "ventmere needs the order's account id")
        order = event.order
        shipping_method = (
            order.ship_method.description or order.ship_method.code if order.ship_method else None
        )
        body: dict[str, Any] = {
            "accountId": target.account_id,
            "channelOrderId": order.order_number,
            "channelOrderIdAlt": _text(order.external_ref),
            "channelOrderIdAlt2": _text(order.purchase_order_number),
            "channelShippingMethod": _text(shipping_method),
            "shippingAddress": ventmere_address(order.shipping_address),
            "billingAddress": ventmere_address(order.billing_address),
            "meta": order.attributes,
            "channelOrderDate": to_rfc3339(order.order_date),
            "currencyId": order.currency,
            "shipByDate": to_rfc3339(order.ship_by_date) if order.ship_by_date else None,
            "deliveryByDate": to_rfc3339(order.deliver_by_date) if order.deliver_by_date else None,
            "customerNote": _text(order.customer_note),
            "items": [ventmere_item(line) for line in order.lines],
            "attachments": [{"fileName": a.file_name, "path": a.path} for a in order.attachments],
        }
        return json_request("PUT", f"{self.base_url}/order/{path_segment(target.order_id)}", body)


def _text(value: str | None) -> str:
    return value if value is not None else ""


def ventmere_address(address: Address | None) -> dict[str, str] | None:
    if address is None:
        return None
    name = " ".join(part for part in (address.first_name, address.middle_name, address.last_name) if part)
    return {
        "name": name,
        "company": _text(address.company),
        "address1": _text(address.line1),
        "address2": _text(address.line2),
        "city": _text(address.city),
        "state": _text(address.state or address.region),
        "postalCode": _text(address.postal_code),
        "countryId": _text(address.country),
        "phone": _text(address.phone),
        "email": _text(address.email),
    }


def ventmere_item(line: OrderLine) -> dict[str, Any]:
    return {
        "channelOrderItemId": line.line_id,
        "productId": _text(line.product_id),
        "quantity": line.quantity,
        "unitPrice": decimal_number(line.unit_price),
        "meta": line.attributes,
    }


def decimal_number(money: str) -> orjson.Fragment:
    """A decimal string as a JSON number, digit for digit (a float would round 15+6-digit amounts)."""
    # "f" drops leading zeros ("007.50" is not a JSON number) without going through binary floating point.
    return orjson.Fragment(format(Decimal(money), "f"))


def authenticator(settings: PlatformSettings, transport: Transport, redactor: Redactor) -> Authenticator:
    if not isinstance(settings, VentmereSettings):
        raise TypeError(f"ventmere needs VentmereSettings, not {type(settings).__name__}")
    if settings.api_token is None or not settings.organization_id:
        raise ConfigError(
            "platforms.ventmere.api_token and organization_id are required when ventmere is enabled"
        )
    token = settings.api_token.get_secret_value()
    redactor.add(token)
    return StaticHeaders(
        [("Authorization", f"Bearer {token}"), ("X-S2-Organization", settings.organization_id)]
    )
