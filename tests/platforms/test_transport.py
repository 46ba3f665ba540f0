from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from connector.platforms.http import PlatformRequest
from connector.platforms.transport import MAX_RESPONSE_BYTES, Transport


@pytest.fixture
async def chunked_server() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for chunk in range(int(request.query["chunks"])):
            await response.write(bytes([65 + chunk % 26]) * 10_000)
            # A slow sender: the client sees the body arrive in pieces, not all at once.
            await asyncio.sleep(0.002)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.mark.parametrize("chunks", [3, 20])
async def test_body_is_read_whole_up_to_the_limit(
    chunked_server: str, transport: Transport, chunks: int
) -> None:
    request = PlatformRequest("GET", f"{chunked_server}/x?chunks={chunks}", (), b"")
    response = await transport.send(request, (), timeout_s=5)
    assert len(response.body) == min(chunks * 10_000, MAX_RESPONSE_BYTES)
