"""What an attempt that got no answer means is asked of its error (`retryable`), not decided again here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pytest

from connector.config import PlatformsSettings
from connector.errors import (
    AuthFlowUnavailableError,
    PlatformConnectionError,
    PlatformTimeoutError,
    TransportError,
)
from connector.models import ErrorCategory, Platform
from connector.observability.redaction import Redactor
from connector.platforms.base import Verdict
from connector.platforms.http import PlatformRequest, PlatformResponse
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport
from tests.platforms.conftest import GOLDEN_SETTINGS, golden_event


class RefusedForGood(TransportError):
    """A transport failure that says retrying cannot help."""

    retryable: ClassVar[bool] = False


class FailingTransport(Transport):
    def __init__(self, error: TransportError) -> None:
        super().__init__()
        self.error = error

    async def send(
        self, request: PlatformRequest, extra_headers: Sequence[tuple[str, str]], timeout_s: float
    ) -> PlatformResponse:
        raise self.error


@pytest.mark.parametrize(
    ("error", "verdict", "category"),
    [
        (PlatformTimeoutError("slow"), Verdict.RETRY, ErrorCategory.TIMEOUT),
        (PlatformConnectionError("reset"), Verdict.RETRY, ErrorCategory.CONNECTION),
        (AuthFlowUnavailableError("no token"), Verdict.RETRY, ErrorCategory.AUTH),
        (RefusedForGood("never"), Verdict.REJECT, ErrorCategory.CONNECTION),
    ],
)
async def test_an_unanswered_attempt_is_retried_when_its_error_says_so(
    error: TransportError, verdict: Verdict, category: ErrorCategory
) -> None:
    settings = PlatformsSettings.model_validate(GOLDEN_SETTINGS).get(Platform.VUCUSTOM)
    adapter = build_adapter(Platform.VUCUSTOM, settings, FailingTransport(error), Redactor())
    attempt = await adapter.attempt(adapter.build_request(golden_event("us")))
    assert (attempt.verdict, attempt.category, attempt.status_code) == (verdict, category, None)
