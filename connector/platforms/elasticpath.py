"""Elastic Path's "Update an Order" (PUT /v2/orders/{id}) with a client-credentials token.

Elastic Path's OpenAPI spec makes the request's `data` exactly one of three shapes, so one event
sends one of them, chosen by the canonical status:

- `cancelled` -> a cancel, `{"type": "order", "status": "cancelled"}` (`status` takes no other value);
- `fulfilled` -> a fulfilment, `{"type": "order", "shipping": "fulfilled"}` (fulfilment is the
  order's shipping status, not its status);
- otherwise an address/number update, `shipping_address` required: an open or on-hold event
  without a shipping address cannot be sent (`unmappable`).

`external_ref` (at most 64 characters) may go in any shape. Elastic Path refuses nulls in an
address, so every address value is a string, "" when the event does not know it.

A 409 is a write conflict, worth another attempt (Elastic Path's errors guide). A fulfilled or
cancelled order refuses any change; when the refused request was itself that fulfilment or
cancel (sent again after a crash, because its first answer was never recorded), the order is
already where the event wants it. The adapter then reads the order (GET /v2/orders/{id}) and
reports the delivery applied when it is in that state, rejected otherwise. See the README,
"Differences from the contract, and choices it leaves open".
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any
from urllib.parse import urlencode

import orjson

from connector.config import ElasticPathSettings, PlatformSettings
from connector.errors import ConfigError, OrderSyncError, UnmappableError
from connector.models import Address, OrderChangedEvent, OrderStatus, Platform
from connector.observability.redaction import Redactor
from connector.observability.tracecontext import carried_headers
from connector.platforms.auth import Authenticator, TokenEndpointAuthenticator
from connector.platforms.base import Attempt, PlatformAdapter, Verdict
from connector.platforms.http import (
    JSON_HEADERS,
    PlatformRequest,
    PlatformResponse,
    json_request,
    path_segment,
)
from connector.platforms.transport import Transport

EXTERNAL_REF_MAX = 64
#: The final states a request can ask for: (field of `data`, value), per canonical status.
FINAL_STATES: dict[OrderStatus, tuple[str, str]] = {
    OrderStatus.CANCELLED: ("status", "cancelled"),
    OrderStatus.FULFILLED: ("shipping", "fulfilled"),
}
#: Elastic Path's answer to a change of an order that is fulfilled or cancelled.
_FINAL_STATE_REFUSAL = 422


class ElasticPathAdapter(PlatformAdapter):
    platform = Platform.ELASTICPATH
    #: 409 is Elastic Path's write conflict: another write to the order won; this one may be redone.
    retryable_statuses = frozenset({408, 409, 429})

    def build_request(self, event: OrderChangedEvent) -> PlatformRequest:
        target = event.targets.elasticpath
        if target is None:
            raise UnmappableError("targets.elasticpath", "the event does not target elasticpath")
        if target.order_id is None:
            raise UnmappableError("targets.elasticpath.order_id", "elasticpath needs the order's id")
        order = event.order
        data: dict[str, Any] = {"type": "order"}
        final = FINAL_STATES.get(order.status)
        if final is not None:
            field, value = final
            data[field] = value
        else:
            if order.shipping_address is None:
                raise UnmappableError(
                    "order.shipping_address",
                    f"elasticpath needs the shipping address to update an order that is {order.status.value}",
                )
            data["order_number"] = order.order_number
            data["shipping_address"] = elasticpath_address(order.shipping_address)
        if order.external_ref is not None:
            if len(order.external_ref) > EXTERNAL_REF_MAX:
                raise UnmappableError(
                    "order.external_ref", f"elasticpath accepts at most {EXTERNAL_REF_MAX} characters"
                )
            data["external_ref"] = order.external_ref
        return json_request(
            "PUT", f"{self.base_url}/v2/orders/{path_segment(target.order_id)}", {"data": data}
        )

    async def attempt(self, request: PlatformRequest) -> Attempt:
        attempt = await super().attempt(request)
        if attempt.verdict is Verdict.REJECT and attempt.status_code == _FINAL_STATE_REFUSAL:
            final = _requested_final_state(request.body)
            if final is not None and await self._order_is_in(request, final):
                field, value = final
                return Attempt(Verdict.APPLIED, 200, message=f"the order's {field} was already {value}")
        return attempt

    async def _order_is_in(self, request: PlatformRequest, final: tuple[str, str]) -> bool:
        """Whether the order `request` addressed is already in `final`; False when that cannot be read."""
        try:
            headers = (*JSON_HEADERS, *carried_headers(request.headers))
            response = await self._send(PlatformRequest("GET", request.url, headers, b""))
            field, value = final
            return response.status == 200 and orjson.loads(response.body)["data"].get(field) == value
        except (OrderSyncError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            # Unreadable (no answer, a token flow failing now): the refusal stands, as it came.
            return False

    def classify(self, response: PlatformResponse) -> Attempt:
        attempt = super().classify(response)
        if attempt.verdict is Verdict.APPLIED:
            return attempt
        detail = _error_detail(response.body)
        if detail:
            return dataclasses.replace(attempt, message=self.redactor.redact(f"{attempt.message}: {detail}"))
        return attempt


def _requested_final_state(body: bytes) -> tuple[str, str] | None:
    """The cancel or fulfilment a request body asks for, None for an address/number update."""
    try:
        data = orjson.loads(body)["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    for field, value in FINAL_STATES.values():
        if data.get(field) == value:
            return field, value
    return None


def elasticpath_address(address: Address) -> dict[str, str]:
    def text(value: str | None) -> str:
        return value if value is not None else ""

    # Elastic Path has `region` (state, province) and `county`; the canonical `region` is the
    # finer one when a state is known, and stands in for the state when it is not.
    region, county = (address.state, address.region) if address.state else (address.region, None)
    return {
        "first_name": text(address.first_name),
        "last_name": text(address.last_name),
        "phone_number": text(address.phone),
        "company_name": text(address.company),
        "line_1": text(address.line1),
        "line_2": text(address.line2),
        "city": text(address.city),
        "county": text(county),
        "region": text(region),
        "postcode": text(address.postal_code),
        "country": text(address.country),
        "instructions": text(address.instructions),
    }


def _error_detail(body: bytes) -> str:
    """The first `errors[].detail` (or title) of an Elastic Path error answer, "" if there is none."""
    try:
        errors = orjson.loads(body).get("errors")
        first = errors[0]
        return str(first.get("detail") or first.get("title") or "")[:200]
    except (orjson.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError):
        return ""


class ElasticPathTokenAuthenticator(TokenEndpointAuthenticator):
    """Client-credentials token from `POST {BASE_URL}/oauth/access_token` (form encoded)."""

    name = "elasticpath"

    def __init__(self, settings: ElasticPathSettings, transport: Transport, redactor: Redactor) -> None:
        super().__init__(
            transport=transport,
            redactor=redactor,
            timeout_s=settings.timeout_s,
            refresh_margin_s=settings.token_refresh_margin_s,
        )
        if settings.client_id is None or settings.client_secret is None:
            raise ConfigError(
                "platforms.elasticpath.client_id and client_secret are required when elasticpath is enabled"
            )
        self._url = f"{settings.resolved_base_url()}/oauth/access_token"
        self._client_id = settings.client_id
        self._client_secret = settings.client_secret
        redactor.add(settings.client_secret.get_secret_value())

    def token_request(self) -> PlatformRequest:
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
            }
        )
        headers = (("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"))
        return PlatformRequest("POST", self._url, headers, form.encode("ascii"))

    def read_token(self, answer: Any) -> tuple[str, float]:
        if answer.get("expires_in") is not None:
            return str(answer["access_token"]), float(answer["expires_in"])
        # Only the absolute `expires` (Unix seconds): fall back on it.
        return str(answer["access_token"]), float(answer["expires"]) - time.time()


def authenticator(settings: PlatformSettings, transport: Transport, redactor: Redactor) -> Authenticator:
    if not isinstance(settings, ElasticPathSettings):
        raise TypeError(f"elasticpath needs ElasticPathSettings, not {type(settings).__name__}")
    return ElasticPathTokenAuthenticator(settings, transport, redactor)
