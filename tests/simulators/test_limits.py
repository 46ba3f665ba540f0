"""The platforms' request limits as the simulators enforce them, and the answers beyond them."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import aiohttp
import pytest

from connector.devtools.simulators.limits import RequestsPerSecond, ThrottleAfterEvery, WindowQuota
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.simulators.conftest import SimulatorClient

SC_BODY = {"CurrencyCode": "USD"}


def test_window_quota_refuses_until_its_window_ends_and_refusals_do_not_count() -> None:
    quota = WindowQuota(3, 10.0)
    assert [quota.admit(t) for t in (100.0, 101.0, 102.0)] == [None, None, None]
    assert quota.admit(103.0) == 110.0
    assert quota.admit(109.9) == 110.0
    # A new window opens with the first request after the old one closed, with a full quota.
    assert [quota.admit(t) for t in (110.0, 111.0, 112.0)] == [None, None, None]
    assert quota.admit(112.5) == 120.0


def test_throttle_after_every_nth_request_holds_for_its_time() -> None:
    throttle = ThrottleAfterEvery(2, 2.0)
    assert throttle.admit(0.0) is None
    assert throttle.admit(0.1) is None  # the 2nd goes through and starts the throttle
    assert throttle.admit(0.2) == pytest.approx(2.1)
    assert throttle.admit(2.0) == pytest.approx(2.1)
    assert throttle.admit(2.1) is None


def test_requests_per_second_allows_one_seconds_worth_then_the_rate() -> None:
    limit = RequestsPerSecond(25)
    assert all(limit.admit(0.0) is None for _ in range(25))
    refused_until = limit.admit(0.0)
    assert refused_until == pytest.approx(0.04)
    assert limit.admit(0.04) is None
    # 50 rps for two seconds: the refilled second's worth, then the rate.
    first = sum(limit.admit(1.0 + k / 50) is None for k in range(50))
    second = sum(limit.admit(2.0 + k / 50) is None for k in range(50))
    assert 48 <= first <= 50
    assert 25 <= second <= 26


async def test_sellercloud_throttle_answers_its_documented_body_until_the_reset_time(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    auth = await client.auth_headers(Platform.SELLERCLOUD)
    # Token requests count: Sellercloud counts every endpoint.
    suite.sellercloud.limit = ThrottleAfterEvery(2, 1.0)
    await client.token(Platform.SELLERCLOUD)
    statuses = []
    for _ in range(3):
        status, answer, headers = await client.put(
            Platform.SELLERCLOUD, "/api/Orders/1", SC_BODY, headers=auth
        )
        statuses.append(status)
    assert statuses == [200, 429, 429]
    assert set(answer) == {"Error", "RateLimitResetTime"}
    assert answer["Error"] == "Too many requests."
    assert "Retry-After" not in headers
    assert answer["RateLimitResetTime"].endswith("Z")
    reset = datetime.fromisoformat(answer["RateLimitResetTime"]).timestamp()
    assert 0 < reset - time.time() <= 1.0
    # Refused until the reset time the answer named, and not a moment longer.
    await asyncio.sleep(max(0.0, reset - time.time()) + 0.01)
    assert (await client.put(Platform.SELLERCLOUD, "/api/Orders/1", SC_BODY, headers=auth))[0] == 200


async def test_elasticpath_store_limit_answers_jsonapi_429_beyond_its_rate(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    auth = await client.auth_headers(Platform.ELASTICPATH)
    suite.elasticpath.limit = RequestsPerSecond(3)
    body = {"data": {"type": "order", "status": "cancelled"}}
    answers = [
        await client.put(Platform.ELASTICPATH, f"/v2/orders/o-{n}", body, headers=auth) for n in range(4)
    ]
    # Back to back, well within a second: three go through, the fourth is beyond the rate.
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    _, answer, headers = answers[-1]
    assert answer["errors"][0]["status"] == 429 and answer["errors"][0]["title"] == "Too Many Requests"
    assert "Retry-After" not in headers


async def test_elasticpath_conflict_fault_answers_409_write_conflict(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    suite.elasticpath.faults.update(conflict_every=2)
    body = {"data": {"type": "order", "status": "cancelled"}}
    assert (await client.put(Platform.ELASTICPATH, "/v2/orders/a", body))[0] == 200
    status, answer, _ = await client.put(Platform.ELASTICPATH, "/v2/orders/b", body)
    assert status == 409
    assert answer["errors"][0]["title"] == "Conflict" and "conflict" in answer["errors"][0]["detail"]
    assert (await client.put(Platform.ELASTICPATH, "/v2/orders/b", body))[0] == 200


@pytest.mark.parametrize("separate_ports", [False, True])
async def test_unknown_paths_and_methods_answer_in_each_platforms_error_shape(separate_ports: bool) -> None:
    async with SimulatorSuite(separate_ports=separate_ports) as suite, aiohttp.ClientSession() as session:
        ep, sc = suite.base_url(Platform.ELASTICPATH), suite.base_url(Platform.SELLERCLOUD)
        cases = [
            ("GET", f"{ep}/v2/nothing", 404, "errors"),
            ("DELETE", f"{ep}/v2/orders/o-1", 405, "errors"),
            ("PUT", f"{ep}/v2/orders/o-1", 401, "errors"),
            ("GET", f"{sc}/api/Nothing", 404, "Message"),
            ("PATCH", f"{sc}/api/Orders/1", 405, "Message"),
            ("PUT", f"{sc}/api/Orders/1", 401, "Message"),
        ]
        if separate_ports:
            # Outside the platform's prefix, on a port of its own.
            ep_root = ep.removesuffix(suite.elasticpath.mount)
            cases.append(("GET", f"{ep_root}/elsewhere", 404, "errors"))
        for method, url, expected, key in cases:
            async with session.request(method, url, json={}) as response:
                answer = await response.json(content_type=None)
                assert response.status == expected, (method, url)
                assert response.content_type == "application/json", (method, url)
                assert key in answer, (method, url, answer)
                if key == "errors":
                    assert {"status", "title", "detail"} <= set(answer["errors"][0])
