"""All four simulators together: one port with path prefixes (or one port each), and `order-sync simulate`.

Each platform may have several accounts, as the connector has several connections to it: the
`default` account is served at the platform's prefix, any other one (`add_account`) at
`/accounts/{name}` followed by that prefix, on the same port, with credentials, orders, request
log, tokens, faults and limit of its own.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import signal
import sys
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from aiohttp.web_urldispatcher import PrefixResource
from yarl import URL

from connector.commands import eventloop
from connector.config import CONNECTION_NAME, ENV_PREFIX, PlatformSettings, PlatformsSettings
from connector.devtools.simulators.base import PlatformSimulator
from connector.devtools.simulators.elasticpath import ElasticPathSimulator
from connector.devtools.simulators.faults import Faults
from connector.devtools.simulators.limits import RequestLimit, RequestsPerSecond, WindowQuota
from connector.devtools.simulators.requestlog import DEFAULT_MAXLEN
from connector.devtools.simulators.sellercloud import SellercloudSimulator
from connector.devtools.simulators.ventmere import VentmereSimulator
from connector.devtools.simulators.vucustom import VuCustomSimulator
from connector.models import DEFAULT_CONNECTION, Platform

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import _InfoDict

DEFAULT_HOST = "127.0.0.1"
#: The platforms' own limits (see the README's Configuration section).
SELLERCLOUD_QUOTA = (10_800, 3600.0)
ELASTICPATH_STORE_RPS = 100.0
#: How long stopping waits for requests still being answered (hung ones are released first).
SHUTDOWN_TIMEOUT_S = 2.0
#: The account every platform has, served at the platform's own prefix: the connector's `default`.
DEFAULT_ACCOUNT = DEFAULT_CONNECTION
#: Where accounts other than `default` are served: `/accounts/{name}{mount}`.
ACCOUNTS_PREFIX = "/accounts"
#: `order-sync simulate --accounts N` names the accounts after `default` acct1 ... acct{N-1} (no '-',
#: so that the printed `export` lines can be pasted into a shell).
SIMULATE_ACCOUNT_PREFIX = "acct"
#: Namespace of the organization ids of Ventmere accounts other than `default`.
_VENTMERE_ORGANIZATIONS = uuid.UUID("5b0f8a56-2f7e-4c63-9d52-2c4c1f0e8a11")

S = TypeVar("S", bound=PlatformSimulator)


class SimulatorSuite:
    """The four platform simulators, started and stopped together.

    Each simulator (`suite.vucustom`, `suite.sellercloud`, `suite.elasticpath`, `suite.ventmere`,
    or `suite[platform]`) exposes `faults` (a mutable `Faults`), `log` (its `RequestLog`),
    `orders` and `seed_order(...)`; the token platforms also expose `tokens` (a `TokenIssuer`:
    `lifetime_s`, `expire_all()`, `issued`).

    Those are the platforms' `default` accounts. `add_account(platform, name)` adds another, a
    simulator of its own (`account(platform, name)`), with credentials of its own so that another
    account's are refused as the platform would refuse them. An account's credentials are the
    attributes its `connector_settings` reads (`api_key`/`api_secret`, `username`/`password`,
    `client_id`/`client_secret`, `api_token`/`organization_id`), checked on every call or token
    request: assigning a new value rotates the credential (tokens issued before stay valid until
    they expire, or `tokens.expire_all()`).
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
        connector, not the limits, unless they ask for them. Every account gets the same options,
        each its own `Faults` and limit."""
        self.host = host
        self.platform_limits = platform_limits
        self._requested_port = port
        self._separate_ports = separate_ports
        self._new_faults = functools.partial(
            Faults, latency_s=latency_s, jitter_s=jitter_s, error_rate=error_rate
        )
        self._token_lifetime_s = token_lifetime_s
        self._common: dict[str, Any] = {"strict_ids": strict_ids, "log_maxlen": log_maxlen, "seed": seed}
        self.vucustom = self._new_simulator(VuCustomSimulator)
        self.sellercloud = self._new_simulator(SellercloudSimulator)
        self.elasticpath = self._new_simulator(ElasticPathSimulator)
        self.ventmere = self._new_simulator(VentmereSimulator)
        #: Accounts other than `default`, by platform and name.
        self._accounts: dict[Platform, dict[str, PlatformSimulator]] = {platform: {} for platform in Platform}
        self._runners: list[web.AppRunner] = []
        self._ports: dict[Platform, int] = {}
        #: While running, where each platform's other accounts are routed (one per port).
        self._account_routes: dict[Platform, _AccountRoutes] = {}

    def _new_simulator(self, cls: type[S], **credentials: str) -> S:
        """Every account, default or added later, is built here so that all get the suite's options."""
        options: dict[str, Any] = {"faults": self._new_faults(), **self._common, **credentials}
        if issubclass(cls, SellercloudSimulator | ElasticPathSimulator):
            options["token_lifetime_s"] = self._token_lifetime_s
        simulator = cls(**options)
        if self.platform_limits:
            simulator.limit = _platform_limit(cls.platform)
        return simulator

    @property
    def simulators(self) -> dict[Platform, PlatformSimulator]:
        """The `default` account of each platform."""
        return {
            Platform.VUCUSTOM: self.vucustom,
            Platform.SELLERCLOUD: self.sellercloud,
            Platform.ELASTICPATH: self.elasticpath,
            Platform.VENTMERE: self.ventmere,
        }

    def __getitem__(self, platform: Platform) -> PlatformSimulator:
        return self.simulators[platform]

    def add_account(self, platform: Platform, name: str) -> PlatformSimulator:
        """Another account on `platform`, served at once when the suite is running.

        `name` is a connection name as the connector's settings take it, so that the account can
        be configured as one (`connection_settings`, `connector_env`).
        """
        if not CONNECTION_NAME.fullmatch(name):
            raise ValueError(f"account {name!r}: an account is named [a-z0-9][a-z0-9-]{{0,62}}")
        if name == DEFAULT_ACCOUNT or name in self._accounts[platform]:
            raise ValueError(f"{platform.value} already has an account {name!r}")
        simulator = self._new_simulator(_SIMULATORS[platform], **_account_credentials(platform, name))
        self._accounts[platform][name] = simulator
        if platform in self._account_routes:
            self._account_routes[platform].mount(self._account_path(platform, name), simulator.app())
        return simulator

    def account(self, platform: Platform, name: str = DEFAULT_ACCOUNT) -> PlatformSimulator:
        if name == DEFAULT_ACCOUNT:
            return self[platform]
        try:
            return self._accounts[platform][name]
        except KeyError:
            raise KeyError(f"{platform.value} has no account {name!r}") from None

    def accounts(self, platform: Platform) -> dict[str, PlatformSimulator]:
        """Every account of `platform` by name, `default` first."""
        return {DEFAULT_ACCOUNT: self[platform], **self._accounts[platform]}

    def _every_account(self) -> Iterator[PlatformSimulator]:
        for platform in Platform:
            yield from self.accounts(platform).values()

    def _account_path(self, platform: Platform, name: str) -> str:
        mount = self.account(platform, name).mount
        return mount if name == DEFAULT_ACCOUNT else f"{ACCOUNTS_PREFIX}/{name}{mount}"

    async def start(self) -> None:
        """Bind and serve; with port 0 the system picks a free port (see `port` / `ports`)."""
        if self._runners:
            raise RuntimeError("the simulator suite is already running")
        if self._separate_ports:
            for offset, platform in enumerate(Platform):
                port = self._requested_port + offset if self._requested_port else 0
                self._ports[platform] = await self._serve([platform], port)
        else:
            port = await self._serve(list(Platform), self._requested_port)
            self._ports = dict.fromkeys(Platform, port)

    async def _serve(self, platforms: list[Platform], port: int) -> int:
        # Each simulator keeps its path prefix even on a port of its own, so base URLs have one shape.
        # aiohttp runs sub-applications' middleware only when some application it knows at start
        # has middleware: the default accounts' do, so the other accounts' (`_AccountRoutes`) runs.
        simulators = [self[platform] for platform in platforms]
        middlewares = [_answer_unrouted_as(simulators[0])] if len(simulators) == 1 else []
        app = web.Application(middlewares=middlewares)
        for simulator in simulators:
            app.add_subapp(simulator.mount, simulator.app())
        routes = _AccountRoutes()
        app.router.register_resource(routes)
        for platform in platforms:
            self._account_routes[platform] = routes
            for name, simulator in self._accounts[platform].items():
                routes.mount(self._account_path(platform, name), simulator.app())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self.host, port).start()
        bound: int = runner.addresses[0][1]
        return bound

    async def stop(self) -> None:
        for simulator in self._every_account():
            simulator.release_hung()
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        self._ports = {}
        self._account_routes = {}

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

    def base_url(self, platform: Platform, account: str = DEFAULT_ACCOUNT) -> str:
        """The account's BASE_URL, as the connector's settings want it."""
        return f"http://{self.host}:{self.ports[platform]}{self._account_path(platform, account)}"

    def connection_settings(self, platform: Platform, name: str) -> dict[str, str]:
        """The account's keys as a connection holds them (lower case, no prefix): base URL and credentials."""
        return self.account(platform, name).connector_settings(self.base_url(platform, name))

    def connector_env(self, prefix: str = ENV_PREFIX) -> dict[str, str]:
        """Environment variables (BASE_URL and credentials per platform) that point a connector here.

        Each account other than `default` is a connection of the same name. Without
        `platform_limits` there is no Sellercloud quota to spare, so the connector is told to send
        to Sellercloud unthrottled (its default, 3 rps, would only slow tests down); a test that
        means to try the default removes that variable.
        """
        env: dict[str, str] = {}
        for platform, simulator in self.simulators.items():
            for key, value in simulator.connector_settings(self.base_url(platform)).items():
                env[f"{prefix}PLATFORMS__{platform.value.upper()}__{key.upper()}"] = value
        for platform in Platform:
            for name in self._accounts[platform]:
                connection = f"{prefix}PLATFORMS__{platform.value.upper()}__CONNECTIONS__{name.upper()}"
                for key, value in self.connection_settings(platform, name).items():
                    env[f"{connection}__{key.upper()}"] = value
        if not self.platform_limits:
            env[f"{prefix}PLATFORMS__SELLERCLOUD__RATE_LIMIT_RPS"] = "0"
        return env

    def platform_settings(self, platform: Platform, **overrides: Any) -> PlatformSettings:
        """The connector's settings for `platform` pointing here, with `overrides` applied."""
        values = {**self[platform].connector_settings(self.base_url(platform)), **overrides}
        return PlatformsSettings.model_validate({platform.value: values}).get(platform)

    def set_faults(self, **changes: Any) -> None:
        """Change the same `Faults` fields on every account of every platform."""
        for simulator in self._every_account():
            simulator.faults.update(**changes)

    def reset_faults(self) -> None:
        for simulator in self._every_account():
            simulator.faults.reset()

    def expire_tokens(self) -> None:
        """Forced expiry on every account of the token platforms: every token issued so far is refused
        from now on."""
        for simulator in self._every_account():
            if isinstance(simulator, SellercloudSimulator | ElasticPathSimulator):
                simulator.tokens.expire_all()


_SIMULATORS: dict[Platform, type[PlatformSimulator]] = {
    Platform.VUCUSTOM: VuCustomSimulator,
    Platform.SELLERCLOUD: SellercloudSimulator,
    Platform.ELASTICPATH: ElasticPathSimulator,
    Platform.VENTMERE: VentmereSimulator,
}


def _platform_limit(platform: Platform) -> RequestLimit | None:
    if platform is Platform.SELLERCLOUD:
        return WindowQuota(*SELLERCLOUD_QUOTA)
    if platform is Platform.ELASTICPATH:
        return RequestsPerSecond(ELASTICPATH_STORE_RPS)
    return None


def _account_credentials(platform: Platform, name: str) -> dict[str, str]:
    """Credentials derived from the account's name, so that they are stable from run to run (a test
    or `order-sync simulate` user can predict them) and differ from every other account's."""
    tag = f"sim-{platform.value}-{name}"
    if platform is Platform.VUCUSTOM:
        return {"api_key": f"{tag}-key", "api_secret": f"{tag}-secret"}
    if platform is Platform.SELLERCLOUD:
        return {"username": f"{tag}-user", "password": f"{tag}-password"}
    if platform is Platform.ELASTICPATH:
        return {"client_id": f"{tag}-client", "client_secret": f"{tag}-secret"}
    # A Ventmere account is an organization: another one has another id, as well as its own token.
    return {"api_token": f"{tag}-token", "organization_id": str(uuid.uuid5(_VENTMERE_ORGANIZATIONS, name))}


class _AccountRoutes(PrefixResource):
    """The accounts other than `default` served on one port, each at `/accounts/{name}{mount}`.

    A port's application is frozen once it serves, so an account added to a running suite cannot
    become one more sub-application: this one resource, registered at start, resolves into each
    account's application the way aiohttp's own sub-application resource does (the account's
    middleware, so its faults, limit and request log, included).
    """

    def __init__(self) -> None:
        super().__init__(ACCOUNTS_PREFIX)
        self._mounted: dict[str, web.PrefixedSubAppResource] = {}

    def mount(self, path: str, app: web.Application) -> None:
        resource = web.PrefixedSubAppResource(path, app)
        # Frozen as a sub-application is when its parent starts: its router and response signals.
        app.freeze()
        self._mounted[path] = resource

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo | None, set[str]]:
        path = request.rel_url.path_safe
        found = next(
            (res for prefix, res in self._mounted.items() if path == prefix or path.startswith(prefix + "/")),
            None,
        )
        if found is None:
            return None, set()
        return await found.resolve(request)

    def url_for(self, *args: str, **kwargs: str) -> URL:
        raise RuntimeError(".url_for() is not supported by the accounts' routes")

    def get_info(self) -> _InfoDict:
        return {"prefix": self._prefix}

    def __len__(self) -> int:
        return sum(len(resource) for resource in self._mounted.values())

    def __iter__(self) -> Iterator[web.AbstractRoute]:
        return itertools.chain.from_iterable(list(self._mounted.values()))


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
    accounts: int = 1,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the four simulators on one port until `stop` is set (forever when None); print the env to use.

    `accounts` per platform: `default` and acct1 ... acct{accounts - 1}, the connector's
    connections of the same names in the env printed.
    """
    if accounts < 1:
        raise ValueError("accounts must be at least 1 (the default account)")
    suite = SimulatorSuite(
        host=host,
        port=port,
        latency_s=latency_ms / 1000,
        error_rate=error_rate,
        token_lifetime_s=token_lifetime_s,
        strict_ids=strict_ids,
        platform_limits=platform_limits,
    )
    for platform in Platform:
        for number in range(1, accounts):
            suite.add_account(platform, f"{SIMULATE_ACCOUNT_PREFIX}{number}")
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
    accounts: int = 1,
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
            accounts=accounts,
            stop=stop,
        )

    try:
        eventloop.run(main())
    except OSError as exc:
        print(f"order-sync simulate: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    return 0
