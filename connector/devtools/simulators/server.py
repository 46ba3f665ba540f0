"""All four simulators together: one port with path prefixes (or one port each), and `order-sync simulate`."""

from __future__ import annotations

import asyncio
import signal
import sys
from types import TracebackType
from typing import Any

from aiohttp import web

from connector.commands import eventloop
from connector.config import ENV_PREFIX, PlatformSettings, PlatformsSettings
from connector.devtools.simulators.base import PlatformSimulator
from connector.devtools.simulators.elasticpath import ElasticPathSimulator
from connector.devtools.simulators.faults import Faults
from connector.devtools.simulators.limits import RequestsPerSecond, WindowQuota
from connector.devtools.simulators.requestlog import DEFAULT_MAXLEN
from connector.devtools.simulators.sellercloud import SellercloudSimulator
from connector.devtools.simulators.ventmere import VentmereSimulator
from connector.devtools.simulators.vucustom import VuCustomSimulator
from connector.models import Platform

DEFAULT_HOST = "127.0.0.1"
#: The platforms' own limits (see the README's Configuration section).
SELLERCLOUD_QUOTA = (10_800, 3600.0)
ELASTICPATH_STORE_RPS = 100.0
#: How long stopping waits for requests still being answered (hung ones are released first).
SHUTDOWN_TIMEOUT_S = 2.0


class SimulatorSuite:
    """The four platform simulators, started and stopped together.

    Each simulator (`suite.vucustom`, `suite.sellercloud`, `suite.elasticpath`, `suite.ventmere`,
    or `suite[platform]`) exposes `faults` (a mutable `Faults`), `log` (its `RequestLog`),
    `orders` and `seed_order(...)`; the token platforms also expose `tokens` (a `TokenIssuer`:
    `lifetime_s`, `expire_all()`, `issued`).
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        separate_ports: bool = False,
        latency_s: float = 0.0,
        jitter_s: float = 0.0,
        error_rate: float = 0.0,
        token_lifetime_s: float = 3600.0,
        strict_ids: bool = False,
        log_maxlen: int = DEFAULT_MAXLEN,
        seed: int | None = None,
        platform_limits: bool = False,
    ) -> None:
        """`platform_limits` enforces the platforms' own request limits (Sellercloud's hourly quota,
        Elastic Path's per-store rate); off by default so that tests and benchmarks measure the
        connector, not the limits, unless they ask for them."""
        self.host = host
        self.platform_limits = platform_limits
        self._requested_port = port
        self._separate_ports = separate_ports

        def common() -> dict[str, Any]:
            faults = Faults(latency_s=latency_s, jitter_s=jitter_s, error_rate=error_rate)
            return {"faults": faults, "strict_ids": strict_ids, "log_maxlen": log_maxlen, "seed": seed}

        self.vucustom = VuCustomSimulator(**common())
        self.sellercloud = SellercloudSimulator(token_lifetime_s=token_lifetime_s, **common())
        self.elasticpath = ElasticPathSimulator(token_lifetime_s=token_lifetime_s, **common())
        self.ventmere = VentmereSimulator(**common())
        if platform_limits:
            self.sellercloud.limit = WindowQuota(*SELLERCLOUD_QUOTA)
            self.elasticpath.limit = RequestsPerSecond(ELASTICPATH_STORE_RPS)
        self._runners: list[web.AppRunner] = []
        self._ports: dict[Platform, int] = {}

    @property
    def simulators(self) -> dict[Platform, PlatformSimulator]:
        return {
            Platform.VUCUSTOM: self.vucustom,
            Platform.SELLERCLOUD: self.sellercloud,
            Platform.ELASTICPATH: self.elasticpath,
            Platform.VENTMERE: self.ventmere,
        }

    def __getitem__(self, platform: Platform) -> PlatformSimulator:
        return self.simulators[platform]

    async def start(self) -> None:
        """Bind and serve; with port 0 the system picks a free port (see `port` / `ports`)."""
        if self._runners:
            raise RuntimeError("the simulator suite is already running")
        if self._separate_ports:
            for offset, (platform, simulator) in enumerate(self.simulators.items()):
                port = self._requested_port + offset if self._requested_port else 0
                self._ports[platform] = await self._serve([simulator], port)
        else:
            port = await self._serve(list(self.simulators.values()), self._requested_port)
            self._ports = dict.fromkeys(Platform, port)

    async def _serve(self, simulators: list[PlatformSimulator], port: int) -> int:
        # Each simulator keeps its path prefix even on a port of its own, so base URLs have one shape.
        middlewares = [_answer_unrouted_as(simulators[0])] if len(simulators) == 1 else []
        app = web.Application(middlewares=middlewares)
        for simulator in simulators:
            app.add_subapp(simulator.mount, simulator.app())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self.host, port).start()
        bound: int = runner.addresses[0][1]
        return bound

    async def stop(self) -> None:
        for simulator in self.simulators.values():
            simulator.release_hung()
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        self._ports = {}

    async def __aenter__(self) -> SimulatorSuite:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port (the first platform's when each has its own)."""
        return self.ports[Platform.VUCUSTOM]

    @property
    def ports(self) -> dict[Platform, int]:
        if not self._ports:
            raise RuntimeError("the simulator suite is not running")
        return dict(self._ports)

    def base_url(self, platform: Platform) -> str:
        """The platform's BASE_URL, as the connector's settings want it."""
        return f"http://{self.host}:{self.ports[platform]}{self[platform].mount}"

    def connector_env(self, prefix: str = ENV_PREFIX) -> dict[str, str]:
        """Environment variables (BASE_URL and credentials per platform) that point a connector here.

        Without `platform_limits` there is no Sellercloud quota to spare, so the connector is told
        to send to Sellercloud unthrottled (its default, 3 rps, would only slow tests down); a test
        that means to try the default removes that variable.
        """
        env: dict[str, str] = {}
        for platform, simulator in self.simulators.items():
            for key, value in simulator.connector_settings(self.base_url(platform)).items():
                env[f"{prefix}PLATFORMS__{platform.value.upper()}__{key.upper()}"] = value
        if not self.platform_limits:
            env[f"{prefix}PLATFORMS__SELLERCLOUD__RATE_LIMIT_RPS"] = "0"
        return env

    def platform_settings(self, platform: Platform, **overrides: Any) -> PlatformSettings:
        """The connector's settings for `platform` pointing here, with `overrides` applied."""
        values = {**self[platform].connector_settings(self.base_url(platform)), **overrides}
        return PlatformsSettings.model_validate({platform.value: values}).get(platform)

    def set_faults(self, **changes: Any) -> None:
        """Change the same `Faults` fields on every simulator."""
        for simulator in self.simulators.values():
            simulator.faults.update(**changes)

    def reset_faults(self) -> None:
        for simulator in self.simulators.values():
            simulator.faults.reset()

    def expire_tokens(self) -> None:
        """Forced expiry on both token platforms: every token issued so far is refused from now on."""
        self.sellercloud.tokens.expire_all()
        self.elasticpath.tokens.expire_all()


def _answer_unrouted_as(simulator: PlatformSimulator) -> Any:
    """On a port of one platform's own, paths outside its prefix are answered in its error shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return simulator.error_answer(exc.status, exc.reason)

    return middleware


async def serve(
    port: int,
    *,
    host: str = DEFAULT_HOST,
    latency_ms: float = 0.0,
    error_rate: float = 0.0,
    token_lifetime_s: float = 3600.0,
    strict_ids: bool = False,
    platform_limits: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the four simulators on one port until `stop` is set (forever when None); print the env to use."""
    suite = SimulatorSuite(
        host=host,
        port=port,
        latency_s=latency_ms / 1000,
        error_rate=error_rate,
        token_lifetime_s=token_lifetime_s,
        strict_ids=strict_ids,
        platform_limits=platform_limits,
    )
    async with suite:
        print(f"order-sync simulators listening on http://{host}:{suite.port}", flush=True)
        print("Point a connector at them with:", flush=True)
        for name, value in suite.connector_env().items():
            print(f"export {name}={value}", flush=True)
        await (stop or asyncio.Event()).wait()


def run_simulate(
    port: int,
    latency_ms: float = 0.0,
    *,
    host: str = DEFAULT_HOST,
    error_rate: float = 0.0,
    token_lifetime_s: float = 3600.0,
    strict_ids: bool = False,
    platform_limits: bool = True,
) -> int:
    """`order-sync simulate`: serve until SIGINT or SIGTERM, then exit 0."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(
            port,
            host=host,
            latency_ms=latency_ms,
            error_rate=error_rate,
            token_lifetime_s=token_lifetime_s,
            strict_ids=strict_ids,
            platform_limits=platform_limits,
            stop=stop,
        )

    try:
        eventloop.run(main())
    except OSError as exc:
        print(f"order-sync simulate: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    return 0
