"""The dispatcher acting on what adapters say an answer means: platform-wide holds, retries, slow-downs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from connector.codec import decode_event
from connector.delivery.dispatcher import PlatformDispatcher, Ungated
from connector.devtools.simulators.limits import ThrottleAfterEvery
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Outcome, Platform
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor
from connector.platforms.base import PlatformAdapter
from connector.platforms.http import PlatformRequest
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport
from tests.resilience.conftest import max_in_window
from tests.support.events import make_event

#: A request the connector sent before it read a 429 may reach the simulator just after that 429
#: was answered (loopback, and one event loop shared by both): it was in flight, not sent late.
IN_FLIGHT_SLACK_S = 0.05


class Superseded(Ungated):
    """A sender that only asks whether a newer version waits."""

    def __init__(self, newer_waiting: Callable[[], bool]) -> None:
        self._newer_waiting = newer_waiting

    def superseded(self) -> bool:
        return self._newer_waiting()


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    shared = Transport()
    yield shared
    await shared.close()


def sellercloud(suite: SimulatorSuite, transport: Transport, **overrides: object) -> PlatformAdapter:
    settings = suite.platform_settings(Platform.SELLERCLOUD, **overrides)
    return build_adapter(Platform.SELLERCLOUD, settings, transport, Redactor())


def sellercloud_request(adapter: PlatformAdapter, order_id: int) -> PlatformRequest:
    event = make_event(f"ord-{order_id}", 1, {"sellercloud": {"order_id": order_id, "company_id": 12}})
    return adapter.build_request(decode_event(orjson.dumps(event)))


async def test_a_platform_wide_throttle_holds_every_request_until_its_reset_and_charges_nothing(
    suite: SimulatorSuite, transport: Transport
) -> None:
    hold_s = 0.6
    suite.sellercloud.limit = ThrottleAfterEvery(6, hold_s)
    # Two attempts each: a delivery charged for the throttle would be exhausted.
    settings = {"rate_limit_rps": 0, "max_attempts": 2, "max_concurrency": 4}
    adapter = sellercloud(suite, transport, **settings)
    metrics = Metrics()
    dispatcher = PlatformDispatcher(
        adapter, suite.platform_settings(Platform.SELLERCLOUD, **settings), metrics
    )
    deliveries = 30
    reports = await asyncio.wait_for(
        asyncio.gather(
            *(dispatcher.deliver(sellercloud_request(adapter, 700 + n)) for n in range(deliveries))
        ),
        60,
    )
    assert [(r.outcome, r.attempts) for r in reports] == [(Outcome.APPLIED, 1)] * deliveries
    log = list(suite.sellercloud.log)
    refused = [e for e in log if e.status == 429]
    assert refused, "the throttle never refused a request"
    early = []
    for first in refused:
        assert first.answered_at is not None
        until = first.notes["limited_until"]
        early += [e for e in log if first.answered_at + IN_FLIGHT_SLACK_S < e.at < until and e.status == 429]
    assert early == [], f"{len(early)} requests were sent inside a throttle window"
    held = metrics.registry.get_sample_value(
        "order_sync_throttled_seconds_total", {"platform": "sellercloud", "connection": "default"}
    )
    assert held is not None
    windows = len({e.notes["limited_until"] for e in refused})
    print(
        f"\n{deliveries} Sellercloud deliveries through {windows} throttle windows of {hold_s}s:"
        f" {len(log)} requests, {len(refused)} answered 429 (all in flight when the throttle began),"
        f" held {held:.2f}s, every delivery applied at its first attempt;"
        f" most requests in any {hold_s}s: {max_in_window([e.at for e in log], hold_s)}"
    )
    assert held >= windows * hold_s * 0.5


async def test_after_a_platform_wide_throttle_requests_leave_at_the_rate_not_together(
    suite: SimulatorSuite, transport: Transport
) -> None:
    rate, burst = 20.0, 2.0
    suite.sellercloud.limit = ThrottleAfterEvery(8, 0.5)
    settings = {"rate_limit_rps": rate, "rate_limit_burst": burst, "max_concurrency": 16}
    adapter = sellercloud(suite, transport, **settings)
    metrics = Metrics()
    dispatcher = PlatformDispatcher(
        adapter, suite.platform_settings(Platform.SELLERCLOUD, **settings), metrics
    )
    deliveries = 40
    reports = await asyncio.wait_for(
        asyncio.gather(
            *(dispatcher.deliver(sellercloud_request(adapter, 800 + n)) for n in range(deliveries))
        ),
        60,
    )
    assert {r.outcome for r in reports} == {Outcome.APPLIED}
    arrivals = [e.at for e in suite.sellercloud.log]
    assert any(e.status == 429 for e in suite.sellercloud.log), "the throttle never refused a request"
    worst = {}
    for window_s in (0.1, 0.25, 0.5, 1.0):
        seen = max_in_window(arrivals, window_s)
        # The first request also fetched a token (uncounted here); arrivals jitter by a few ms.
        bound = burst + rate * (window_s + 0.05)
        assert seen <= bound, f"{seen} requests within {window_s}s; the bucket allows {bound:.1f}"
        worst[window_s] = seen
    print(
        f"\n{rate:g} rps, burst {burst:g}, throttled 0.5 s after every 8th:"
        f" most requests in any window {worst}"
    )


async def test_a_superseded_delivery_sends_nothing_more_once_a_newer_version_waits(
    suite: SimulatorSuite, transport: Transport
) -> None:
    settings = {"rate_limit_rps": 0, "circuit_reset_s": 0.2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
    adapter = sellercloud(suite, transport, **settings)
    dispatcher = PlatformDispatcher(
        adapter, suite.platform_settings(Platform.SELLERCLOUD, **settings), Metrics()
    )
    # Nothing newer waits: the request is sent.
    sent = await dispatcher.deliver(sellercloud_request(adapter, 801), Superseded(lambda: False))
    assert sent.outcome is Outcome.APPLIED and len(suite.sellercloud.log) == 1
    # A newer version arrives once this one was refused by an outage: it stops before its next send.
    suite.sellercloud.faults.outage = True

    def newer_waiting() -> bool:
        return any(e.status == 503 for e in suite.sellercloud.log)

    report = await asyncio.wait_for(
        dispatcher.deliver(sellercloud_request(adapter, 802), Superseded(newer_waiting)), 10
    )
    sent_before = len(suite.sellercloud.log)
    suite.sellercloud.faults.outage = False
    assert report.outcome is Outcome.SUPERSEDED and report.error is None and report.attempts >= 1
    assert len(suite.sellercloud.log) == sent_before, "a superseded delivery sent again"
    # Superseded before its first send: no request at all.
    first = await dispatcher.deliver(sellercloud_request(adapter, 803), Superseded(lambda: True))
    assert first.outcome is Outcome.SUPERSEDED and first.attempts == 0
    assert len(suite.sellercloud.log) == sent_before
