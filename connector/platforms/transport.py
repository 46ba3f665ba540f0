"""The one place requests meet the network. aiohttp's exceptions are translated here."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
from yarl import URL

from connector.errors import PlatformConnectionError, PlatformTimeoutError
from connector.platforms.http import PlatformRequest, PlatformResponse

#: Bodies beyond this are truncated: only an excerpt is ever kept.
MAX_RESPONSE_BYTES = 64 * 1024


class Transport:
    """Sends `PlatformRequest`s over one pooled aiohttp session."""

    def __init__(self, connection_limit: int = 256) -> None:
        self._connection_limit = connection_limit
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connection_limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, request: PlatformRequest, extra_headers: Sequence[tuple[str, str]], timeout_s: float
    ) -> PlatformResponse:
        headers = [*request.headers, *extra_headers]
        try:
            async with self.session.request(
                request.method,
                # encoded=True: adapters percent-encode identifiers themselves; re-quoting would
                # decode `%2E%2E` into a dot-segment and resolve it away, changing the path.
                URL(request.url, encoded=True),
                headers=headers,
                data=request.body,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as response:
                return PlatformResponse(
                    status=response.status,
                    headers={k.lower(): v for k, v in response.headers.items()},
                    body=await _read_limited(response.content, MAX_RESPONSE_BYTES),
                )
        except TimeoutError as exc:
            raise PlatformTimeoutError(f"no response within {timeout_s:g}s") from exc
        except asyncio.TimeoutError as exc:  # noqa: UP041 - aiohttp may raise either spelling
            raise PlatformTimeoutError(f"no response within {timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise PlatformConnectionError(f"{type(exc).__name__}: {exc}") from exc


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes:
    # One read() returns whatever has arrived so far, possibly a single chunk; read until EOF or limit.
    body = bytearray()
    while len(body) < limit:
        chunk = await stream.read(limit - len(body))
        if not chunk:
            break
        body.extend(chunk)
    return bytes(body)
