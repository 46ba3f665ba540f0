"""What every platform simulator shares: the fault, limit and logging middleware, errors, order lookup.

Every answer a simulator gives is in its platform's own error shape (`refusal_body`), also for
paths it does not serve, methods it does not allow, and limits and faults it plays, so a real
client's error handling can be tried against it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import orjson
from aiohttp import web

from connector.devtools.simulators.faults import FaultInjector, FaultKind, Faults
from connector.devtools.simulators.limits import RequestLimit
from connector.devtools.simulators.requestlog import DEFAULT_MAXLEN, LoggedRequest, RequestLog
from connector.models import Platform

#: Route name of token endpoints: their requests are counted, not logged, and never `reject_status`ed.
TOKEN_ROUTE = "token"
_ENTRY_KEY = web.RequestKey("order_sync_log_entry", LoggedRequest)

K = TypeVar("K")
V = TypeVar("V")


class Refusal(Exception):
    """The simulated platform refuses the request; each simulator renders it in its own error shape."""

    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


class PlatformSimulator(ABC):
    """One platform's API: routes, auth, validation and order state on top of shared fault injection."""

    platform: ClassVar[Platform]
    #: Path prefix when the suite serves every platform on one port.
    mount: ClassVar[str]

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        strict_ids: bool = False,
        log_maxlen: int = DEFAULT_MAXLEN,
        seed: int | None = None,
    ) -> None:
        self.faults = faults if faults is not None else Faults()
        self.injector = FaultInjector(self.faults, seed)
        self.log = RequestLog(log_maxlen)
        #: When true, unknown order ids are answered 404 instead of creating the order.
        self.strict_ids = strict_ids
        #: The platform's request limit (quota, throttle, per-second rate); None = unlimited.
        #: Tests may replace it while requests are flowing.
        self.limit: RequestLimit | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        self.add_routes(app.router)
        return app

    @abstractmethod
    def add_routes(self, router: web.UrlDispatcher) -> None: ...

    @abstractmethod
    def refusal_body(self, refusal: Refusal) -> Any:
        """The platform's JSON error body for a refusal (it must name the field when there is one)."""

    @abstractmethod
    def connector_settings(self, base_url: str) -> dict[str, str]:
        """The connector's settings for this platform (lower-case keys, e.g. `base_url`, `api_key`)."""

    def limit_answer(self, until: float) -> web.StreamResponse:
        """The answer to a request refused by `limit` until the monotonic time `until`."""
        body = self.refusal_body(Refusal(429, None, "Too many requests"))
        return web.json_response(body, status=429, dumps=_dumps)

    def release_hung(self) -> None:
        self.injector.release_hung()

    def error_answer(self, status: int, message: str) -> web.StreamResponse:
        """An error in the platform's shape (also for paths and methods no route serves)."""
        return web.json_response(
            self.refusal_body(Refusal(status, None, message)), status=status, dumps=_dumps
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        is_token = request.match_info.route.name == TOKEN_ROUTE
        entry = None
        if is_token:
            self.log.count_token_request()
        else:
            raw = await request.read()
            entry = LoggedRequest(
                at=time.monotonic(),
                method=request.method,
                raw_path=request.rel_url.raw_path,
                query=request.rel_url.raw_query_string,
                headers=tuple(request.headers.items()),
                raw_body=raw,
                body=_json_or_none(raw),
            )
            request[_ENTRY_KEY] = entry
            self.log.append(entry)
        response = await self._answer(request, handler, order_update=not is_token, entry=entry)
        if entry is not None:
            entry.status = None if entry.fault in _UNANSWERED else response.status
            entry.answered_at = time.monotonic()
            self.log.changed()
        return response

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[..., Any],
        *,
        order_update: bool,
        entry: LoggedRequest | None,
    ) -> web.StreamResponse:
        await self.injector.delay()
        if self.limit is not None:
            until = self.limit.admit(time.monotonic())
            if until is not None:
                if entry is not None:
                    entry.notes["limited_until"] = until
                return self.limit_answer(until)
        fault = self.injector.choose(order_update=order_update)
        if entry is not None and fault is not None:
            entry.fault = fault.value
        if fault is FaultKind.HANG:
            await self.injector.hold()
            fault = FaultKind.DROP
        if fault is FaultKind.DROP:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=499)
        if fault is not None:
            status = self.injector.status_of(fault)
            headers = {"Retry-After": str(self.faults.retry_after_s)} if fault is FaultKind.RATE_LIMIT else {}
            body = self.refusal_body(Refusal(status, None, f"simulated {fault.value}"))
            return web.json_response(body, status=status, headers=headers, dumps=_dumps)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except Refusal as refusal:
            return web.json_response(self.refusal_body(refusal), status=refusal.status, dumps=_dumps)
        except web.HTTPException as exc:
            # aiohttp's own answers (no such path, method not allowed) are plain text: a client
            # parsing the platform's errors would choke on them.
            if exc.status < 400:
                raise
            return self.error_answer(exc.status, exc.reason)

    @staticmethod
    def note_order(request: web.Request, order_id: str) -> None:
        """Record which order a logged request addressed, so tests can correlate by id."""
        entry = request.get(_ENTRY_KEY)
        if entry is not None:
            entry.order_id = order_id

    def lookup(self, orders: dict[K, V], key: K, create: Callable[[], V]) -> V:
        """The order under `key`, created on first sight unless `strict_ids`."""
        if key not in orders:
            if self.strict_ids:
                raise Refusal(404, None, f"order {key} not found")
            orders[key] = create()
        return orders[key]


_UNANSWERED = frozenset({FaultKind.DROP.value, FaultKind.HANG.value})


def _json_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


async def json_body(request: web.Request, status: int = 400) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise Refusal(status, None, "the body is not valid JSON") from None


def expect_object(value: Any, where: str, status: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refusal(status, where, f"{where} must be an object")
    return value


def expect_keys(value: dict[str, Any], allowed: frozenset[str], where: str, status: int) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        field = f"{where}.{unknown[0]}" if where else unknown[0]
        raise Refusal(status, field, f"{field} is not a field this endpoint accepts")


def expect_string(
    value: Any, where: str, status: int, *, nullable: bool = False, required: bool = False
) -> None:
    """A string (or null when `nullable`); `required` also refuses the empty string."""
    if value is None and nullable and not required:
        return
    if not isinstance(value, str):
        raise Refusal(status, where, f"{where} must be a string" + (" or null" if nullable else ", not null"))
    if required and not value.strip():
        raise Refusal(status, where, f"{where} is required")
