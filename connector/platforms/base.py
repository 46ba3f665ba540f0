"""The adapter interface: map an event to a request (pure), send it, classify the answer.

An adapter knows one platform's API page. It does not retry, rate-limit or count: those are
policies the dispatcher composes around `PlatformAdapter.attempt`. It is, however, the one owner
of what the platform's answers mean: whether a refusal is worth another attempt, how long to wait,
whether the wait holds only this request or every request to the platform, and whether the
platform asked us to send more slowly. The dispatcher and the token flows ask it (`classify`).
A request that got no answer at all is retryable when its error says so (`OrderSyncError.retryable`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from connector.config import PlatformSettings
from connector.errors import AuthFlowError, AuthFlowUnavailableError, PlatformTimeoutError, TransportError
from connector.models import ErrorCategory, OrderChangedEvent, Platform
from connector.observability.redaction import Redactor
from connector.platforms.auth import Authenticator
from connector.platforms.http import RETRYABLE_STATUSES, PlatformRequest, PlatformResponse, parse_retry_after
from connector.platforms.transport import Transport


class Verdict(StrEnum):
    """What one attempt means for the delivery."""

    #: 2xx: the change is applied.
    APPLIED = "applied"
    #: Worth another attempt later (5xx, timeout, connection error, and the statuses the platform's
    #: adapter calls retryable: 408, 429, Elastic Path's 409).
    RETRY = "retry"
    #: The platform refused the request for good.
    REJECT = "reject"


class WaitScope(StrEnum):
    """Who waits before the next request after a retryable answer."""

    #: Only the refused delivery waits (backoff, `Retry-After`); it is charged an attempt.
    REQUEST = "request"
    #: Every request to the platform waits until `retry_after` has passed (a platform-wide
    #: throttle, such as Sellercloud's quota): like an open circuit, nobody is charged for it.
    PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class Attempt:
    """The classified result of one attempt (after at most one auth refresh)."""

    verdict: Verdict
    status_code: int | None = None
    category: ErrorCategory | None = None
    message: str = ""
    #: Seconds the platform asked us to wait (`Retry-After`), if it did.
    retry_after: float | None = None
    response_excerpt: str | None = None
    #: True when the attempt was a token refresh's retry.
    refreshed_auth: bool = field(default=False)
    #: Whether `retry_after` holds only this delivery or the whole platform.
    wait_scope: WaitScope = WaitScope.REQUEST
    #: The platform said we send too fast: the rate limit should slow down.
    slow_down: bool = False


class PlatformAdapter(ABC):
    """One platform's "update order" API."""

    platform: ClassVar[Platform]
    #: Statuses below 500 worth another attempt on this platform (5xx always are).
    retryable_statuses: ClassVar[frozenset[int]] = RETRYABLE_STATUSES

    def __init__(
        self,
        settings: PlatformSettings,
        transport: Transport,
        authenticator: Authenticator,
        redactor: Redactor,
    ) -> None:
        self.settings = settings
        self.base_url = settings.resolved_base_url()
        self.transport = transport
        self.authenticator = authenticator
        self.redactor = redactor
        self._refresh_on = frozenset(settings.auth_refresh_on)

    @abstractmethod
    def build_request(self, event: OrderChangedEvent) -> PlatformRequest:
        """Map the event to this platform's request. Pure; raises `UnmappableError`."""

    async def attempt(self, request: PlatformRequest) -> Attempt:
        """Send once (refreshing a token flow's credentials and resending once if told to) and classify."""
        try:
            auth_headers = await self.authenticator.headers()
            response = await self.transport.send(request, auth_headers, self.settings.timeout_s)
            if response.status in self._refresh_on and self.authenticator.refreshable:
                await self.authenticator.refresh(refused=auth_headers)
                response = await self._send(request)
                attempt = self.classify(response)
                return dataclasses.replace(attempt, refreshed_auth=True)
            return self.classify(response)
        except AuthFlowError as exc:
            # The token endpoint is the platform's too: its answers mean what the API's answers mean
            # (a throttle there holds the platform as well), except that a refusal is about credentials.
            answer = self.classify(PlatformResponse(exc.status_code, exc.headers, exc.body))
            return dataclasses.replace(
                answer,
                category=ErrorCategory.AUTH,
                message=self.redactor.redact(str(exc)),
                response_excerpt=self.redactor.excerpt(exc.body.decode("utf-8", "replace")),
            )
        except TransportError as exc:
            # No answer to classify: whether trying again can help is the error's to say (errors.py).
            verdict = Verdict.RETRY if exc.retryable else Verdict.REJECT
            return Attempt(verdict, None, _category_of(exc), self.redactor.redact(str(exc)))

    async def _send(self, request: PlatformRequest) -> PlatformResponse:
        auth_headers = await self.authenticator.headers()
        return await self.transport.send(request, auth_headers, self.settings.timeout_s)

    def classify(self, response: PlatformResponse) -> Attempt:
        """What an answer means: 2xx applied; `retryable_statuses` and 5xx retried; others rejected.

        Platforms refine it (a platform-wide throttle, a retryable conflict, an error body's detail).
        """
        status = response.status
        if 200 <= status < 300:
            return Attempt(Verdict.APPLIED, status)
        excerpt = self.redactor.excerpt(response.body.decode("utf-8", "replace"))
        if status in self.retryable_statuses or status >= 500:
            category = ErrorCategory.RATE_LIMITED if status == 429 else ErrorCategory.SERVER_ERROR
            return Attempt(
                Verdict.RETRY,
                status,
                category,
                f"{self.platform.value} answered {status}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                response_excerpt=excerpt,
                slow_down=status == 429,
            )
        category = ErrorCategory.AUTH if status in (401, 403) else ErrorCategory.CLIENT_ERROR
        return Attempt(
            Verdict.REJECT,
            status,
            category,
            f"{self.platform.value} answered {status}",
            response_excerpt=excerpt,
        )


def _category_of(exc: TransportError) -> ErrorCategory:
    if isinstance(exc, AuthFlowUnavailableError):
        return ErrorCategory.AUTH
    if isinstance(exc, PlatformTimeoutError):
        return ErrorCategory.TIMEOUT
    return ErrorCategory.CONNECTION
