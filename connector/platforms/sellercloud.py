"""Sellercloud's "Update Order" (PUT /api/Orders/{id}) with a JWT from POST /api/token.

Only fields the event knows are sent. An address is a full replacement on Sellercloud's side,
so it is sent whole: every field present, null where the event has no value, and the page's
required fields (plus State for US and CA) checked before anything is sent.

Sellercloud counts requests per client IP (10,800 an hour, across every endpoint, the token
endpoint included). Beyond it, it answers 429 with `{"Error": ..., "RateLimitResetTime": "<UTC>"}`
and no `Retry-After`, and refuses every request until that time: a throttle of the whole platform,
not of one request, so `classify` says so and the dispatcher holds every Sellercloud request.
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from connector.config import PlatformSettings, SellercloudSettings
from connector.errors import ConfigError, UnmappableError
from connector.models import Address, OrderChangedEvent, Platform
from connector.observability.redaction import Redactor
from connector.platforms.auth import Authenticator, TokenEndpointAuthenticator
from connector.platforms.base import Attempt, PlatformAdapter, Verdict, WaitScope
from connector.platforms.http import PlatformRequest, PlatformResponse, json_request, path_segment
from connector.platforms.transport import Transport

#: (Sellercloud field, canonical field, required by the page)
ADDRESS_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("FirstName", "first_name", True),
    ("LastName", "last_name", True),
    ("MiddleName", "middle_name", False),
    ("ZipCode", "postal_code", True),
    ("City", "city", True),
    ("Country", "country", True),
    ("Business", "company", False),
    ("AddressLine1", "line1", True),
    ("AddressLine2", "line2", False),
    ("Fax", "fax", False),
    ("Region", "region", False),
    ("State", "state", False),
    ("Phone", "phone", False),
)
#: Countries for which the page makes State required.
STATE_REQUIRED_IN = frozenset({"US", "CA"})
_TWO_LETTERS = re.compile(r"[A-Za-z]{2}")
#: Bounds of a throttle hold. The floor keeps a clock running ahead of Sellercloud's from turning
#: "reset time already passed" into a stream of immediate, refused requests; the ceiling is the
#: quota's own window, so a garbled reset time cannot stop Sellercloud deliveries for longer.
MIN_HOLD_S = 0.5
MAX_HOLD_S = 3600.0


class SellercloudAdapter(PlatformAdapter):
    platform = Platform.SELLERCLOUD

    def build_request(self, event: OrderChangedEvent) -> PlatformRequest:
        target = event.targets.sellercloud
        if target is None:
            raise UnmappableError("targets.sellercloud", "the event does not target sellercloud")
        if target.order_id is None:
            raise UnmappableError("targets.sellercloud.order_id", "sellercloud needs the order's id")
        order = event.order
        body: dict[str, Any] = {}
        if target.company_id is not None:
            body["CompanyId"] = target.company_id
        body["CurrencyCode"] = order.currency
        if order.shipping_address is not None:
            body["ShippingAddress"] = sellercloud_address(order.shipping_address, "order.shipping_address")
        if order.billing_address is not None:
            body["BillingAddress"] = sellercloud_address(order.billing_address, "order.billing_address")
        return json_request("PUT", f"{self.base_url}/api/Orders/{path_segment(target.order_id)}", body)

    def classify(self, response: PlatformResponse) -> Attempt:
        attempt = super().classify(response)
        if response.status != 429:
            return attempt
        reset_in = throttle_reset_in(response.body)
        if reset_in is None:
            # A 429 without the quota's body (a proxy, another limit): per request, and slow down.
            return attempt
        return dataclasses.replace(
            attempt,
            verdict=Verdict.RETRY,
            message=f"sellercloud quota exhausted; every request waits {reset_in:.1f}s for its reset",
            retry_after=reset_in,
            wait_scope=WaitScope.PLATFORM,
            # The hold is the pacing: the quota is refilled at the reset, not by sending slower.
            slow_down=False,
        )


def throttle_reset_in(body: bytes, now: float | None = None) -> float | None:
    """Seconds until the `RateLimitResetTime` of a throttle answer (bounded), None without a readable one."""
    try:
        value = orjson.loads(body).get("RateLimitResetTime")
        reset = datetime.fromisoformat(str(value).strip())
    except (orjson.JSONDecodeError, AttributeError, ValueError):
        return None
    if reset.tzinfo is None:
        # The page documents the time as UTC.
        reset = reset.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return min(MAX_HOLD_S, max(MIN_HOLD_S, reset.timestamp() - current))


def sellercloud_address(address: Address, where: str) -> dict[str, str | None]:
    """The whole Sellercloud address; `UnmappableError` naming the field when a required one is missing."""
    mapped: dict[str, str | None] = {}
    for name, canonical, required in ADDRESS_FIELDS:
        value: str | None = getattr(address, canonical)
        if required and not (value and value.strip()):
            raise UnmappableError(f"{where}.{canonical}", f"sellercloud requires {name}")
        mapped[name] = value
    country = str(mapped["Country"])
    if not _TWO_LETTERS.fullmatch(country):
        raise UnmappableError(f"{where}.country", "sellercloud needs a two-letter country code")
    mapped["Country"] = country = country.upper()
    if country in STATE_REQUIRED_IN:
        state = mapped["State"]
        if not (state and state.strip()):
            raise UnmappableError(f"{where}.state", f"sellercloud requires State when Country is {country}")
        if not _TWO_LETTERS.fullmatch(state):
            raise UnmappableError(
                f"{where}.state", f"sellercloud needs a two-letter State code for {country}"
            )
        mapped["State"] = state.upper()
    return mapped


class SellercloudTokenAuthenticator(TokenEndpointAuthenticator):
    """JWT from `POST {BASE_URL}/api/token` with JSON `{"Username", "Password"}`."""

    name = "sellercloud"

    def __init__(self, settings: SellercloudSettings, transport: Transport, redactor: Redactor) -> None:
        super().__init__(
            transport=transport,
            redactor=redactor,
            timeout_s=settings.timeout_s,
            refresh_margin_s=settings.token_refresh_margin_s,
        )
        if settings.username is None or settings.password is None:
            raise ConfigError(
                "platforms.sellercloud.username and password are required when sellercloud is enabled"
            )
        self._url = f"{settings.resolved_base_url()}/api/token"
        self._username = settings.username
        self._password = settings.password
        redactor.add(settings.password.get_secret_value())

    def token_request(self) -> PlatformRequest:
        credentials = {"Username": self._username, "Password": self._password.get_secret_value()}
        return json_request("POST", self._url, credentials)

    def read_token(self, answer: Any) -> tuple[str, float]:
        # The answer also carries `.issued` and `.expires` (HTTP dates); `expires_in` is enough
        # and does not depend on the two clocks agreeing.
        return str(answer["access_token"]), float(answer["expires_in"])


def authenticator(settings: PlatformSettings, transport: Transport, redactor: Redactor) -> Authenticator:
    if not isinstance(settings, SellercloudSettings):
        raise TypeError(f"sellercloud needs SellercloudSettings, not {type(settings).__name__}")
    return SellercloudTokenAuthenticator(settings, transport, redactor)
