"""Each injected fault, changed at run time on a running simulator."""

from __future__ import annotations

import time

import aiohttp
import pytest

from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.simulators.conftest import SimulatorClient

VU_PATH = "/api/v1/orders?id=1"
VU_BODY = {"order": {"note": "hello"}}


async def test_latency_delays_every_answer(suite: SimulatorSuite, client: SimulatorClient) -> None:
    suite.vucustom.faults.latency_s = 0.5
    with pytest.raises(TimeoutError):
        await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY, timeout_s=0.05)
    suite.vucustom.faults.update(latency_s=0.05, jitter_s=0.01)
    started = time.monotonic()
    status, _, _ = await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY)
    assert status == 200
    assert time.monotonic() - started >= 0.05


async def test_outage_answers_503_until_it_ends(suite: SimulatorSuite, client: SimulatorClient) -> None:
    suite.vucustom.faults.outage = True
    assert (await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY))[0] == 503
    suite.vucustom.faults.outage = False
    suite.vucustom.faults.outage_for(60)
    assert (await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY))[0] == 503
    suite.vucustom.faults.outage_until = time.monotonic()
    assert (await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY))[0] == 200
    assert [entry.fault for entry in suite.vucustom.log] == ["outage", "outage", None]


async def test_every_nth_request_is_rate_limited_with_retry_after(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    suite.vucustom.faults.update(rate_limit_every=3, retry_after_s=2)
    answers = [await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY) for _ in range(9)]
    assert [status for status, _, _ in answers] == [200, 200, 429] * 3
    assert {headers.get("Retry-After") for status, _, headers in answers if status == 429} == {"2"}


async def test_error_rate_answers_500(suite: SimulatorSuite, client: SimulatorClient) -> None:
    suite.vucustom.faults.error_rate = 1.0
    assert (await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY))[0] == 500
    suite.vucustom.faults.error_rate = 0.0
    assert (await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY))[0] == 200


async def test_drop_closes_the_connection_without_an_answer(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    suite.vucustom.faults.drop_rate = 1.0
    with pytest.raises(aiohttp.ClientError):
        await client.put(Platform.VUCUSTOM, VU_PATH, VU_BODY)
    # aiohttp resends an idempotent request once after a disconnect, so there may be two.
    assert {(entry.fault, entry.status) for entry in suite.vucustom.log} == {("drop", None)}


async def test_hang_never_answers_until_released(suite: SimulatorSuite, client: SimulatorClient) -> None:
    simulator = suite.ventmere
    simulator.faults.hang_rate = 1.0
    with pytest.raises(TimeoutError):
        await client.put(Platform.VENTMERE, "/order/x", {}, timeout_s=0.2)
    assert simulator.injector.hung == 1
    simulator.release_hung()
    await simulator.log.wait_for(lambda _: simulator.injector.hung == 0, timeout_s=5)
    [entry] = simulator.log
    assert (entry.fault, entry.status) == ("hang", None)


async def test_reject_everything_spares_the_token_endpoint(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    suite.sellercloud.faults.reject_status = 422
    status, body, _ = await client.put(Platform.SELLERCLOUD, "/api/Orders/5", {"CurrencyCode": "USD"})
    assert status == 422 and body["Message"] == "simulated reject"
    assert suite.sellercloud.log.token_requests == 1
    suite.sellercloud.faults.reset()
    assert (await client.put(Platform.SELLERCLOUD, "/api/Orders/5", {"CurrencyCode": "USD"}))[0] == 200


async def test_forced_token_expiry_refuses_tokens_issued_before(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    headers = await client.auth_headers(Platform.ELASTICPATH)
    # A cancel: the smallest body Elastic Path accepts (an update needs a whole shipping address).
    body = {"data": {"type": "order", "status": "cancelled"}}
    assert (await client.put(Platform.ELASTICPATH, "/v2/orders/o-1", body, headers=headers))[0] == 200
    suite.elasticpath.tokens.expire_all()
    assert (await client.put(Platform.ELASTICPATH, "/v2/orders/o-1", body, headers=headers))[0] == 401
    # A fresh token works (on another order: o-1 is cancelled now and takes no more changes).
    assert (await client.put(Platform.ELASTICPATH, "/v2/orders/o-2", body))[0] == 200


async def test_faults_set_at_construction_apply_from_the_first_request() -> None:
    async with SimulatorSuite(error_rate=1.0) as suite, aiohttp.ClientSession() as session:
        status, _, _ = await SimulatorClient(suite, session).put(Platform.VENTMERE, "/order/x", {})
        assert status == 500
