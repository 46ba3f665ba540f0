"""An identifier from an event stays inside its path segment or query value, whatever it holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from connector.devtools.simulators.server import SimulatorSuite
from connector.models import OrderChangedEvent, Platform
from connector.platforms.base import PlatformAdapter, Verdict
from tests.platforms.conftest import golden_event

HOSTILE = [
    "/",
    "?",
    "#",
    "..",
    ".",
    "../../admin",
    "a/../../b",
    "%2F",
    "%",
    "x?y=1#z",
    "é",
    "注文",
    " ",
    "+",
    "&a=b",
]
ids = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=40))

#: (platform, where the id goes in the event, path prefix before the id)
PATH_IDS = [
    (Platform.ELASTICPATH, ("elasticpath", "order_id"), "/v2/orders/"),
    (Platform.VENTMERE, ("ventmere", "order_id"), "/order/"),
]


def with_target_id(platform_key: str, field: str, value: str) -> OrderChangedEvent:
    document: dict[str, Any] = golden_event("us").model_dump(mode="json")
    target = document["targets"][platform_key]
    target.pop("id", None)  # VU Custom prefers an id over the order number
    target[field] = value
    return OrderChangedEvent.model_validate(document)


def assert_same_origin(url: str, base_url: str) -> None:
    parts, base = urlsplit(url), urlsplit(base_url)
    assert (parts.scheme, parts.netloc, parts.fragment) == (base.scheme, base.netloc, "")
    # What the transport puts on the wire (yarl, encoded=True) is the same URL, unnormalised.
    wire = URL(url, encoded=True)
    assert (wire.scheme, wire.raw_host, wire.raw_path) == (parts.scheme, parts.hostname, parts.path)


@pytest.mark.parametrize(("platform", "where", "prefix"), PATH_IDS, ids=[p.value for p, _, _ in PATH_IDS])
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(order_id=ids)
@example(order_id="..")
def test_order_id_stays_inside_its_path_segment(
    offline_adapter: Callable[[Platform], PlatformAdapter],
    platform: Platform,
    where: tuple[str, str],
    prefix: str,
    order_id: str,
) -> None:
    adapter = offline_adapter(platform)
    url = adapter.build_request(with_target_id(*where, order_id)).url
    assert_same_origin(url, adapter.base_url)
    path = urlsplit(url).path
    base_path = urlsplit(adapter.base_url).path
    assert path.startswith(base_path + prefix)
    segment = path[len(base_path + prefix) :]
    assert "/" not in segment and segment not in (".", "..")
    assert unquote(segment) == order_id
    assert urlsplit(url).query == ""


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(order_number=ids)
def test_order_number_stays_inside_its_query_value(
    offline_adapter: Callable[[Platform], PlatformAdapter], order_number: str
) -> None:
    adapter = offline_adapter(Platform.VUCUSTOM)
    url = adapter.build_request(with_target_id("vucustom", "order_number", order_number)).url
    assert_same_origin(url, adapter.base_url)
    parts = urlsplit(url)
    assert parts.path == "/api/v1/orders"
    assert parse_qs(parts.query, keep_blank_values=True) == {"order_number": [order_number]}


@pytest.mark.parametrize("order_id", HOSTILE)
async def test_hostile_ids_reach_the_simulator_as_one_segment(
    suite: SimulatorSuite, live_adapter: Callable[..., PlatformAdapter], order_id: str
) -> None:
    for platform, where, prefix in PATH_IDS:
        adapter = live_adapter(platform)
        attempt = await adapter.attempt(adapter.build_request(with_target_id(*where, order_id)))
        assert attempt.verdict is Verdict.APPLIED, (platform, attempt)
        [received] = suite[platform].log
        assert received.order_id == order_id
        assert received.raw_path.startswith(suite[platform].mount + prefix)
    vucustom = live_adapter(Platform.VUCUSTOM)
    attempt = await vucustom.attempt(
        vucustom.build_request(with_target_id("vucustom", "order_number", order_id))
    )
    assert attempt.verdict is Verdict.APPLIED
    [received] = suite.vucustom.log
    assert (received.raw_path, received.order_id) == ("/vucustom/api/v1/orders", order_id)
