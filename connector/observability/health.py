"""The operator's HTTP endpoints: /metrics, /healthz (the loop runs), /readyz (able to do work),
/status (this replica's status document, read-only, no secret in it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from connector.observability.metrics import Metrics

ReadinessCheck = Callable[[], dict[str, bool]]
StatusDocument = Callable[[], dict[str, Any]]
#: Checks of `/healthz` beyond the loop running (a background task given up): any False fails it.
LivenessCheck = Callable[[], dict[str, bool]]


def build_app(
    metrics: Metrics,
    readiness: ReadinessCheck,
    status: StatusDocument | None = None,
    liveness: LivenessCheck | None = None,
) -> web.Application:
    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        # Answering at all proves the event loop is running; a background task given up fails it,
        # so that Kubernetes restarts the pod.
        failed = [name for name, ok in (liveness() if liveness else {}).items() if not ok]
        if failed:
            return web.json_response({"status": "failed", "failed": failed}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = readiness()
        ready = all(checks.values())
        metrics.ready.set(1 if ready else 0)
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def status_handler(_: web.Request) -> web.Response:
        if status is None:
            return web.json_response({"error": "no status yet"}, status=503)
        return web.json_response(status())

    app = web.Application()
    app.router.add_get("/status", status_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class HealthServer:
    def __init__(
        self,
        metrics: Metrics,
        readiness: ReadinessCheck,
        host: str,
        port: int,
        status: StatusDocument | None = None,
        liveness: LivenessCheck | None = None,
    ) -> None:
        self._runner = web.AppRunner(build_app(metrics, readiness, status, liveness), access_log=None)
        self._host = host
        self._port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._runner.cleanup()
