"""The HTTP value types every layer of `platforms/` shares: requests, responses, and reading them.

A leaf module: the transport, the token flows and the adapters import it, and it imports none of
them (as httpx's transports import only its models), so `platforms/` has no import circle.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

#: Statuses below 500 worth another attempt on any platform (5xx always are); an adapter may add its own.
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class PlatformRequest:
    """A fully built request, minus credentials (auth headers are added when it is sent)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class PlatformResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


JSON_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "application/json"),
    ("Accept", "application/json"),
)


def path_segment(value: str | int) -> str:
    """`value` as one percent-encoded path segment: it can never add a segment or leave the path."""
    encoded = quote(str(value), safe="")
    # "." and ".." are dot-segments that clients and servers resolve away (RFC 3986 §5.2.4);
    # encoded dots are not, so such an id still addresses its own segment.
    if encoded in (".", ".."):
        return encoded.replace(".", "%2E")
    return encoded


def query_value(value: str | int) -> str:
    """`value` percent-encoded for a query string: it can never add a parameter or a fragment."""
    return quote(str(value), safe="")


def json_request(method: str, url: str, payload: Any) -> PlatformRequest:
    """A request with a JSON body and the JSON content headers every platform page asks for."""
    return PlatformRequest(method, url, JSON_HEADERS, orjson.dumps(payload))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)
