"""Credentials on requests: static headers, HTTP Basic, and cached token flows with single-flight refresh."""

from __future__ import annotations

import asyncio
import base64
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from connector.errors import AuthFlowError, AuthFlowUnavailableError, TransportError
from connector.observability.redaction import MASK, Redactor
from connector.platforms.http import PlatformRequest
from connector.platforms.transport import Transport


class Authenticator(ABC):
    """Supplies the auth headers of a request.

    Contract for token flows: `headers()` reuses a cached token until shortly before it expires;
    however many deliveries ask at once, at most one token request is in flight; `refresh()`
    drops the cached token (when the platform said it expired) so the next `headers()` fetches
    a new one, again single-flight.
    """

    #: True for token flows, where a 401 (or AUTH_REFRESH_ON) may mean "expired, fetch another".
    refreshable: ClassVar[bool] = False

    @abstractmethod
    async def headers(self) -> list[tuple[str, str]]: ...

    async def refresh(self, refused: Sequence[tuple[str, str]] | None = None) -> None:
        """The platform refused `refused` (the auth headers a request carried) as expired."""
        return None

    def masked_headers(self) -> list[tuple[str, str]]:
        """The auth headers a request would carry, with every credential replaced by `***`."""
        return []


def _mask_credential(value: str) -> str:
    scheme, _, credential = value.partition(" ")
    # Keep the scheme ("Basic", "Bearer"): it tells a reader which flow is in use and is no secret.
    return f"{scheme} {MASK}" if credential else MASK


class StaticHeaders(Authenticator):
    """Fixed headers: a static bearer token, an organisation header."""

    def __init__(
        self, headers: list[tuple[str, str]], secret_names: Sequence[str] = ("authorization",)
    ) -> None:
        self._headers = headers
        self._secret_names = frozenset(name.lower() for name in secret_names)

    async def headers(self) -> list[tuple[str, str]]:
        return self._headers

    def masked_headers(self) -> list[tuple[str, str]]:
        return [
            (name, _mask_credential(value) if name.lower() in self._secret_names else value)
            for name, value in self._headers
        ]


def basic_auth_header(username: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return ("Authorization", f"Basic {token}")


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    #: Monotonic time after which the token must not be used.
    expires_at: float

    @property
    def header_value(self) -> str:
        return f"Bearer {self.value}"


class TokenAuthenticator(Authenticator):
    """A cached bearer token from a token endpoint, refreshed before expiry, fetched single-flight."""

    refreshable = True

    def __init__(self, refresh_margin_s: float) -> None:
        self._margin = refresh_margin_s
        self._token: Token | None = None
        self._fetching: asyncio.Task[Token] | None = None
        #: Token requests made so far (tests and metrics read it).
        self.fetches = 0

    @abstractmethod
    async def fetch_token(self) -> tuple[str, float]:
        """Ask the token endpoint; return (access token, lifetime in seconds).

        Raise `AuthFlowError` when the endpoint answers an error status (the adapter classifies
        it), `AuthFlowUnavailableError` when it gives no usable answer.
        """

    async def headers(self) -> list[tuple[str, str]]:
        token = await self._current()
        return [("Authorization", token.header_value)]

    async def refresh(self, refused: Sequence[tuple[str, str]] | None = None) -> None:
        token = self._token
        refused_value = dict((name.lower(), value) for name, value in refused or ()).get("authorization")
        # Drop only the token that was refused: when many requests carried it, the first refusal
        # already replaced it and the others must reuse the replacement, not fetch again.
        if token is not None and (refused_value is None or refused_value == token.header_value):
            self._token = None
        await self._current()

    def masked_headers(self) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {MASK}")]

    async def _current(self) -> Token:
        token = self._token
        if token is not None and time.monotonic() < token.expires_at:
            return token
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
            # Every waiter may have been cancelled; retrieving the outcome keeps asyncio from
            # reporting a "never retrieved" exception for a failure that was already handled.
            self._fetching.add_done_callback(lambda task: task.cancelled() or task.exception())
        # shield: one caller's cancellation must not cancel the fetch the others wait on.
        return await asyncio.shield(self._fetching)

    async def _fetch(self) -> Token:
        self.fetches += 1
        value, lifetime = await self.fetch_token()
        margin = min(self._margin, lifetime / 2)
        token = Token(value, time.monotonic() + lifetime - margin)
        self._token = token
        return token


class TokenEndpointAuthenticator(TokenAuthenticator):
    """A token flow over HTTP: subclasses say how to ask (`token_request`) and how to read the answer.

    Maps the endpoint's answers onto the error tree: 2xx with a readable token is success; any
    other status raises `AuthFlowError` with the answer, which the platform's adapter classifies
    like any of its answers; timeouts, connection failures and answers without a readable token
    raise `AuthFlowUnavailableError` (retryable). Fetched tokens are registered with the redactor so
    they never appear in logs or result excerpts. No message carries a credential.
    """

    #: Names the platform in error messages.
    name: ClassVar[str]

    def __init__(
        self, *, transport: Transport, redactor: Redactor, timeout_s: float, refresh_margin_s: float
    ) -> None:
        super().__init__(refresh_margin_s)
        self._transport = transport
        self._redactor = redactor
        self._timeout_s = timeout_s

    @abstractmethod
    def token_request(self) -> PlatformRequest:
        """The request that asks for a token (it carries the credentials)."""

    @abstractmethod
    def read_token(self, answer: Any) -> tuple[str, float]:
        """(access token, lifetime in seconds) from the decoded JSON answer.

        Raise KeyError, TypeError or ValueError when the answer holds no readable token.
        """

    async def fetch_token(self) -> tuple[str, float]:
        try:
            response = await self._transport.send(self.token_request(), (), self._timeout_s)
        except TransportError as exc:
            raise AuthFlowUnavailableError(f"{self.name} token endpoint: {exc}") from exc
        status = response.status
        if not 200 <= status < 300:
            # What the status means (retry, wait, refused credentials) is the adapter's to say.
            refused = "refused the credentials" if status in (400, 401, 403) else "answered"
            raise AuthFlowError(
                f"{self.name} token endpoint {refused} ({status})", status, response.headers, response.body
            )
        try:
            value, lifetime = self.read_token(orjson.loads(response.body))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # A proxy's error page or a half-deployed endpoint: worth asking again later.
            raise AuthFlowUnavailableError(f"{self.name} token endpoint answered no readable token") from None
        if not value or lifetime <= 0:
            raise AuthFlowUnavailableError(f"{self.name} token endpoint answered no usable token")
        self._redactor.add(value)
        return value, lifetime
