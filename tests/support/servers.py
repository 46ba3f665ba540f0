"""A plain recording HTTP endpoint: accepts any PUT, answers after an optional delay."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Received:
    at: float
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


class RecordingServer:
    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        self.delay_s = delay_s
        self.status = status
        #: When set, requests never answer (until the server stops).
        self.hang = False
        self.requests: list[Received] = []
        self.in_progress = 0
        self.max_in_progress = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.in_progress += 1
        self.max_in_progress = max(self.max_in_progress, self.in_progress)
        try:
            if self.hang:
                await asyncio.Event().wait()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            self.requests.append(
                Received(
                    time.monotonic(),
                    request.method,
                    request.path,
                    dict(request.query),
                    orjson.loads(body) if body else None,
                    dict(request.headers),
                )
            )
            return web.json_response({"ok": True}, status=self.status)
        finally:
            self.in_progress -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{prefix}"
