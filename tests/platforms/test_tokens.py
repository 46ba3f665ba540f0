"""Token flows (Sellercloud, Elastic Path) through `PlatformAdapter.attempt` against the simulators."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from connector.devtools.simulators.server import SimulatorSuite
from connector.models import ErrorCategory, Platform
from connector.platforms.auth import TokenAuthenticator
from connector.platforms.base import Attempt, PlatformAdapter, Verdict
from tests.platforms.conftest import golden_event

TOKEN_PLATFORMS = [Platform.SELLERCLOUD, Platform.ELASTICPATH]
LiveAdapter = Callable[..., PlatformAdapter]


def fetches(adapter: PlatformAdapter) -> int:
    assert isinstance(adapter.authenticator, TokenAuthenticator)
    return adapter.authenticator.fetches


@pytest.mark.parametrize("platform", TOKEN_PLATFORMS)
async def test_concurrent_deliveries_at_start_share_one_token_request(
    platform: Platform, suite: SimulatorSuite, live_adapter: LiveAdapter
) -> None:
    adapter = live_adapter(platform)
    request = adapter.build_request(golden_event("us"))
    attempts = await asyncio.gather(*(adapter.attempt(request) for _ in range(100)))
    assert {attempt.verdict for attempt in attempts} == {Verdict.APPLIED}
    assert suite[platform].log.token_requests == 1
    assert fetches(adapter) == 1


@pytest.mark.parametrize("platform", TOKEN_PLATFORMS)
async def test_a_burst_of_401s_refreshes_the_token_once(
    platform: Platform, suite: SimulatorSuite, live_adapter: LiveAdapter
) -> None:
    adapter = live_adapter(platform)
    request = adapter.build_request(golden_event("us"))
    assert (await adapter.attempt(request)).verdict is Verdict.APPLIED
    suite.expire_tokens()
    attempts = await asyncio.gather(*(adapter.attempt(request) for _ in range(50)))
    assert {attempt.verdict for attempt in attempts} == {Verdict.APPLIED}
    assert all(attempt.refreshed_auth for attempt in attempts)
    assert suite[platform].log.token_requests == fetches(adapter) == 2


async def test_short_lived_tokens_fail_no_delivery(suite: SimulatorSuite, live_adapter: LiveAdapter) -> None:
    """Continuous deliveries with 1 s tokens, until each platform has fetched five: every attempt applied.

    Sellercloud refreshes only when told (margin 0: expired tokens meet a 401, refresh, resend);
    Elastic Path refreshes ahead of expiry (the default margin, capped at half the lifetime).
    Forced expiries after 1.5 and 3 lifetimes exercise refresh-on-401 for both.
    """
    lifetime_s, lifetimes, workers = 1.0, 5, 16
    suite.sellercloud.tokens.lifetime_s = suite.elasticpath.tokens.lifetime_s = lifetime_s
    adapters = {
        Platform.SELLERCLOUD: live_adapter(Platform.SELLERCLOUD, token_refresh_margin_s=0),
        Platform.ELASTICPATH: live_adapter(Platform.ELASTICPATH),
    }
    request = {platform: adapter.build_request(golden_event("us")) for platform, adapter in adapters.items()}
    outcomes: dict[Platform, Counter[tuple[Verdict, bool]]] = {platform: Counter() for platform in adapters}
    failures: list[tuple[Platform, Attempt]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    forced_expiries = [start + 1.5 * lifetime_s, start + 3.0 * lifetime_s]

    def done() -> bool:
        return not forced_expiries and all(fetches(adapter) >= lifetimes for adapter in adapters.values())

    async def deliver(platform: Platform) -> None:
        while not done():
            attempt = await adapters[platform].attempt(request[platform])
            outcomes[platform][attempt.verdict, attempt.refreshed_auth] += 1
            if attempt.verdict is not Verdict.APPLIED:
                failures.append((platform, attempt))
            if forced_expiries and loop.time() >= forced_expiries[0]:
                forced_expiries.pop(0)
                suite.expire_tokens()

    async with asyncio.timeout(60):
        await asyncio.gather(*(deliver(platform) for platform in adapters for _ in range(workers)))
    print(f"ran {loop.time() - start:.1f}s for {lifetimes} token lifetimes of {lifetime_s:g}s")

    assert failures == []
    for platform, adapter in adapters.items():
        refreshed = outcomes[platform][Verdict.APPLIED, True]
        assert refreshed >= 1, platform
        # Every 401 the platform answered was followed by one refresh and an applied resend.
        assert len(suite[platform].log.answered(401)) == refreshed
        # No token fetched that the platform did not see.
        assert suite[platform].log.token_requests == fetches(adapter) >= lifetimes
    # Sellercloud met natural expiries too (not only the two forced ones); Elastic Path renewed ahead.
    assert (
        outcomes[Platform.SELLERCLOUD][Verdict.APPLIED, True]
        > outcomes[Platform.ELASTICPATH][Verdict.APPLIED, True]
    )


@pytest.mark.parametrize(
    ("platform", "wrong"),
    [
        (Platform.SELLERCLOUD, {"password": "wrong-password"}),
        (Platform.ELASTICPATH, {"client_secret": "wrong-secret"}),
    ],
)
async def test_refused_credentials_reject_the_delivery_without_leaking_them(
    platform: Platform, wrong: dict[str, str], live_adapter: LiveAdapter
) -> None:
    adapter = live_adapter(platform, **wrong)
    attempt = await adapter.attempt(adapter.build_request(golden_event("us")))
    assert (attempt.verdict, attempt.category) == (Verdict.REJECT, ErrorCategory.AUTH)
    assert attempt.status_code in (400, 401)
    secret = next(iter(wrong.values()))
    assert secret not in f"{attempt.message} {attempt.response_excerpt}"


@pytest.mark.parametrize("platform", TOKEN_PLATFORMS)
async def test_token_endpoint_outage_is_retryable(
    platform: Platform, suite: SimulatorSuite, live_adapter: LiveAdapter
) -> None:
    suite[platform].faults.outage = True
    adapter = live_adapter(platform)
    request = adapter.build_request(golden_event("us"))
    attempt = await adapter.attempt(request)
    assert (attempt.verdict, attempt.category, attempt.status_code) == (
        Verdict.RETRY,
        ErrorCategory.AUTH,
        503,
    )
    suite[platform].faults.outage = False
    assert (await adapter.attempt(request)).verdict is Verdict.APPLIED


async def test_token_endpoint_429_passes_its_retry_after_on(
    suite: SimulatorSuite, live_adapter: LiveAdapter
) -> None:
    suite.sellercloud.faults.update(rate_limit_every=1, retry_after_s=7)
    adapter = live_adapter(Platform.SELLERCLOUD)
    attempt = await adapter.attempt(adapter.build_request(golden_event("us")))
    assert (attempt.verdict, attempt.status_code, attempt.retry_after) == (Verdict.RETRY, 429, 7.0)


async def test_a_second_401_after_refresh_rejects_the_delivery(
    suite: SimulatorSuite, live_adapter: LiveAdapter
) -> None:
    # Tokens that are dead on arrival: the refreshed one is refused too.
    suite.elasticpath.tokens.lifetime_s = 1e-6
    adapter = live_adapter(Platform.ELASTICPATH)
    attempt = await adapter.attempt(adapter.build_request(golden_event("us")))
    assert (attempt.verdict, attempt.status_code, attempt.refreshed_auth) == (Verdict.REJECT, 401, True)
    assert suite.elasticpath.log.token_requests == fetches(adapter) >= 2
