"""Elastic Path's "Update an Order" (PUT /v2/orders/{id}) with a client-credentials token.

Elastic Path refuses nulls in an address, so every address value is a string, "" when the event
does not know it. `status` is sent only for the two transitions the page allows (cancel, fulfil);
the platform itself refuses any change to a fulfilled order and fulfilment of an unpaid one,
which `classify` reports as rejected with the platform's reason.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any
from urllib.parse import urlencode

import orjson

from connector.config import ElasticPathSettings, PlatformSettings
from connector.errors import ConfigError, UnmappableError
from connector.models import Address, OrderChangedEvent, OrderStatus, Platform
from connector.platforms.auth import Authenticator, TokenEndpointAuthenticator
from connector.platforms.base import (
    Attempt,
    PlatformAdapter,
    PlatformRequest,
    PlatformResponse,
    Verdict,
    json_request,
    path_segment,
)
from connector.platforms.transport import Transport
from connector.redaction import Redactor

EXTERNAL_REF_MAX = 64
#: Canonical statuses Elastic Path has a transition for; the others leave `status` out.
STATUS_TRANSITIONS = {OrderStatus.CANCELLED: "cancelled", OrderStatus.FULFILLED: "fulfilled"}


class ElasticPathAdapter(PlatformAdapter):
    platform = Platform.ELASTICPATH

    def build_request(self, event: OrderChangedEvent) -> PlatformRequest:
        target = event.targets.elasticpath
        if target is None:
            raise UnmappableError("targets.elasticpath", "the event does not target elasticpath")
        if target.order_id is None:
            raise UnmappableError("targets.elasticpath.order_id", "elasticpath needs the order's id")
        order = event.order
        data: dict[str, Any] = {"type": "order", "order_number": order.order_number}
        if order.external_ref is not None:
            if len(order.external_ref) > EXTERNAL_REF_MAX:
                raise UnmappableError(
                    "order.external_ref", f"elasticpath accepts at most {EXTERNAL_REF_MAX} characters"
                )
            data["external_ref"] = order.external_ref
        if order.shipping_address is not None:
            data["shipping_address"] = elasticpath_address(order.shipping_address)
        if order.status in STATUS_TRANSITIONS:
            data["status"] = STATUS_TRANSITIONS[order.status]
        return json_request(
            "PUT", f"{self.base_url}/v2/orders/{path_segment(target.order_id)}", {"data": data}
        )

    def classify(self, response: PlatformResponse) -> Attempt:
        attempt = super().classify(response)
        if attempt.verdict is Verdict.REJECT:
            detail = _error_detail(response.body)
            if detail:
                return dataclasses.replace(
                    attempt, message=self.redactor.redact(f"{attempt.message}: {detail}")
                )
        return attempt


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
