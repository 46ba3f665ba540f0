"""A fresh simulator suite per test and a raw HTTP client that knows each platform's credentials."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform


class SimulatorClient:
    """Sends requests the way a well-behaved client would, so tests can vary one thing at a time."""

    def __init__(self, suite: SimulatorSuite, session: aiohttp.ClientSession) -> None:
        self.suite = suite
        self.session = session

    def url(self, platform: Platform, path: str) -> str:
        return self.suite.base_url(platform) + path

    async def token(self, platform: Platform) -> str:
        if platform is Platform.SELLERCLOUD:
            simulator = self.suite.sellercloud
            credentials = {"Username": simulator.username, "Password": simulator.password}
            async with self.session.post(self.url(platform, "/api/token"), json=credentials) as response:
                assert response.status == 200, await response.text()
                return str((await response.json())["access_token"])
        form = {
            "grant_type": "client_credentials",
            "client_id": self.suite.elasticpath.client_id,
            "client_secret": self.suite.elasticpath.client_secret,
        }
        async with self.session.post(self.url(platform, "/oauth/access_token"), data=form) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["access_token"])

    async def auth_headers(self, platform: Platform) -> dict[str, str]:
        if platform is Platform.VUCUSTOM:
            simulator = self.suite.vucustom
            pair = f"{simulator.api_key}:{simulator.api_secret}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        if platform is Platform.VENTMERE:
            return {
                "Authorization": f"Bearer {self.suite.ventmere.api_token}",
                "X-S2-Organization": self.suite.ventmere.organization_id,
            }
        return {"Authorization": f"Bearer {await self.token(platform)}"}

    async def put(
        self,
        platform: Platform,
        path: str,
        body: Any,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, decoded JSON answer, headers); `headers` replaces the auth headers when given."""
        sent = headers if headers is not None else await self.auth_headers(platform)
        async with self.session.put(
            self.url(platform, path),
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json", **sent},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.read()
            return response.status, orjson.loads(raw) if raw else None, dict(response.headers)


@pytest.fixture
async def suite() -> AsyncIterator[SimulatorSuite]:
    async with SimulatorSuite(seed=7) as running:
        yield running


@pytest.fixture
async def client(suite: SimulatorSuite) -> AsyncIterator[SimulatorClient]:
    async with aiohttp.ClientSession() as session:
        yield SimulatorClient(suite, session)
