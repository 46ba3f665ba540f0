"""Credentials on requests: static headers, HTTP Basic, and cached token flows with single-flight refresh."""

from __future__ import annotations

import asyncio
import base64
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar


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

    async def refresh(self) -> None:
        return None


class StaticHeaders(Authenticator):
    """Fixed headers: a static bearer token, an organisation header."""

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self._headers = headers

    async def headers(self) -> list[tuple[str, str]]:
        return self._headers


def basic_auth_header(username: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return ("Authorization", f"Basic {token}")


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    #: Monotonic time after which the token must not be used.
    expires_at: float


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

        Raise `AuthFlowError` when the credentials are refused, `AuthFlowUnavailableError`
        when the endpoint may answer later.
        """

    async def headers(self) -> list[tuple[str, str]]:
        token = await self._current()
        return [("Authorization", f"Bearer {token.value}")]

    async def refresh(self) -> None:
        stale = self._token
        # Only drop the token that was refused; a concurrent refresh may already have replaced it.
        if self._token is stale:
            self._token = None
        await self._current()

    async def _current(self) -> Token:
        token = self._token
        if token is not None and time.monotonic() < token.expires_at:
            return token
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
        # shield: one caller's cancellation must not cancel the fetch the others wait on.
        return await asyncio.shield(self._fetching)

    async def _fetch(self) -> Token:
        self.fetches += 1
        value, lifetime = await self.fetch_token()
        margin = min(self._margin, lifetime / 2)
        token = Token(value, time.monotonic() + lifetime - margin)
        self._token = token
        return token
