"""VU Custom's "Update an order" (PUT /api/v1/orders?id=|order_number=) with HTTP Basic Admin API keys."""

from __future__ import annotations

from typing import Any

from connector.config import PlatformSettings, VuCustomSettings
from connector.errors import ConfigError, UnmappableError
from connector.models import OrderChangedEvent, Platform
from connector.observability.redaction import Redactor
from connector.platforms.auth import Authenticator, StaticHeaders, basic_auth_header
from connector.platforms.base import PlatformAdapter
from connector.platforms.http import PlatformRequest, json_request, query_value
from connector.platforms.transport import Transport


class VuCustomAdapter(PlatformAdapter):
    platform = Platform.VUCUSTOM

    def build_request(self, event: OrderChangedEvent) -> PlatformRequest:
        target = event.targets.vucustom
        if target is None:
            raise UnmappableError("targets.vucustom", "the event does not target vucustom")
        if target.id is not None:
            query = f"id={query_value(target.id)}"
        else:
            # No id in `targets.vucustom`: the order is addressed by the canonical order number.
            query = f"order_number={query_value(target.order_number or event.order.order_number)}"
        order = event.order
        ship_method = order.ship_method
        fields: dict[str, str | None] = {
            "note": order.customer_note,
            "purchase_order_number": order.purchase_order_number,
            "sales_order_number": order.sales_order_number,
            "ship_method_carrier": ship_method.carrier if ship_method else None,
            "ship_method_code": ship_method.code if ship_method else None,
            "ship_method_description": ship_method.description if ship_method else None,
        }
        # Only what the event knows: a null in the event means "unknown", not "clear it".
        body: dict[str, Any] = {"order": {name: value for name, value in fields.items() if value is not None}}
        return json_request("PUT", f"{self.base_url}/api/v1/orders?{query}", body)


def authenticator(settings: PlatformSettings, transport: Transport, redactor: Redactor) -> Authenticator:
    if not isinstance(settings, VuCustomSettings):
        raise TypeError(f"vucustom needs VuCustomSettings, not {type(settings).__name__}")
    if settings.api_key is None or settings.api_secret is None:
        raise ConfigError("platforms.vucustom.api_key and api_secret are required when vucustom is enabled")
    key, secret = settings.api_key.get_secret_value(), settings.api_secret.get_secret_value()
    header = basic_auth_header(key, secret)
    for credential in (key, secret, header[1].split(" ", 1)[1]):
        redactor.add(credential)
    return StaticHeaders([header])
