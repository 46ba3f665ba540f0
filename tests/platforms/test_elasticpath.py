from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from connector.delivery.dispatcher import PlatformDispatcher
from connector.devtools.simulators.server import SimulatorSuite
from connector.errors import UnmappableError
from connector.models import OrderChangedEvent, Outcome, Platform
from connector.observability.metrics import Metrics
from connector.observability.tracecontext import TraceContext
from connector.platforms.base import PlatformAdapter, Verdict

Documents = Callable[..., dict[str, Any]]
ToEvent = Callable[[dict[str, Any]], OrderChangedEvent]
EP_ORDER = "6c5a6f8e-41f6-4b4e-9d38-3f0f0b4a6a11"


@pytest.fixture
def adapter(offline_adapter: Callable[[Platform], PlatformAdapter]) -> PlatformAdapter:
    return offline_adapter(Platform.ELASTICPATH)


def data_of(adapter: PlatformAdapter, event: OrderChangedEvent) -> Any:
    return orjson.loads(adapter.build_request(event).body)["data"]


@pytest.mark.parametrize(
    ("status", "keys"),
    [
        ("open", {"type", "order_number", "shipping_address"}),
        ("on_hold", {"type", "order_number", "shipping_address"}),
        ("cancelled", {"type", "status"}),
        ("fulfilled", {"type", "shipping"}),
    ],
)
def test_each_status_sends_exactly_one_of_the_three_shapes(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, status: str, keys: set[str]
) -> None:
    document = event_document("us")
    document["order"]["status"] = status
    data = data_of(adapter, to_event(document))
    assert set(data) == keys
    assert data.get("status") in (None, "cancelled")
    assert data.get("shipping") in (None, "fulfilled")


@pytest.mark.parametrize("status", ["open", "on_hold"])
def test_an_update_without_shipping_address_is_unmappable(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, status: str
) -> None:
    document = event_document("us")
    document["order"]["status"] = status
    document["order"]["shipping_address"] = None
    with pytest.raises(UnmappableError) as raised:
        adapter.build_request(to_event(document))
    assert raised.value.field == "order.shipping_address"


@pytest.mark.parametrize("status", ["cancelled", "fulfilled"])
def test_cancel_and_fulfil_need_no_address_and_keep_the_external_ref(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, status: str
) -> None:
    document = event_document("us")
    document["order"].update(status=status, shipping_address=None, external_ref="ext-1")
    assert data_of(adapter, to_event(document))["external_ref"] == "ext-1"


def test_address_values_are_strings_never_null(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    document = event_document("us")
    document["order"]["shipping_address"] = {"first_name": "Ann"}
    address = data_of(adapter, to_event(document))["shipping_address"]
    assert address["first_name"] == "Ann"
    assert all(value == "" for name, value in address.items() if name != "first_name")
    assert len(address) == 12


@pytest.mark.parametrize(("length", "mappable"), [(64, True), (65, False)])
def test_external_ref_is_at_most_64_characters(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, length: int, mappable: bool
) -> None:
    document = event_document("us")
    document["order"]["external_ref"] = "é" * length
    if mappable:
        assert data_of(adapter, to_event(document))["external_ref"] == "é" * length
    else:
        with pytest.raises(UnmappableError) as raised:
            adapter.build_request(to_event(document))
        assert raised.value.field == "order.external_ref"


async def test_a_fulfilled_order_accepts_no_change(
    suite: SimulatorSuite,
    live_adapter: Callable[..., PlatformAdapter],
    event_document: Documents,
    to_event: ToEvent,
) -> None:
    suite.elasticpath.seed_order(EP_ORDER, shipping="fulfilled")
    adapter = live_adapter(Platform.ELASTICPATH)
    attempt = await adapter.attempt(adapter.build_request(to_event(event_document("cancelled"))))
    assert (attempt.verdict, attempt.status_code) == (Verdict.REJECT, 422)
    assert "fulfilled" in attempt.message


async def test_only_a_paid_order_can_be_fulfilled(
    suite: SimulatorSuite,
    live_adapter: Callable[..., PlatformAdapter],
    event_document: Documents,
    to_event: ToEvent,
) -> None:
    suite.elasticpath.seed_order(EP_ORDER, payment="unpaid", status="incomplete")
    adapter = live_adapter(Platform.ELASTICPATH)
    fulfil = adapter.build_request(to_event(event_document("fulfilled")))
    attempt = await adapter.attempt(fulfil)
    assert (attempt.verdict, attempt.status_code) == (Verdict.REJECT, 422)
    assert "paid" in attempt.message
    suite.elasticpath.orders[EP_ORDER]["payment"] = "paid"
    assert (await adapter.attempt(fulfil)).verdict is Verdict.APPLIED
    assert suite.elasticpath.orders[EP_ORDER]["shipping"] == "fulfilled"


@pytest.mark.parametrize(
    ("name", "field", "value"), [("fulfilled", "shipping", "fulfilled"), ("cancelled", "status", "cancelled")]
)
async def test_a_resent_fulfil_or_cancel_ends_applied(
    suite: SimulatorSuite,
    live_adapter: Callable[..., PlatformAdapter],
    event_document: Documents,
    to_event: ToEvent,
    name: str,
    field: str,
    value: str,
) -> None:
    # The first send was applied but its answer never recorded (a crash): the same request again.
    adapter = live_adapter(Platform.ELASTICPATH)
    request = adapter.build_request(to_event(event_document(name)))
    assert (await adapter.attempt(request)).verdict is Verdict.APPLIED
    resent = await adapter.attempt(request)
    assert (resent.verdict, resent.status_code) == (Verdict.APPLIED, 200)
    assert f"already {value}" in resent.message
    log = suite.elasticpath.log.for_order(EP_ORDER)
    assert [(e.method, e.status) for e in log] == [("PUT", 200), ("PUT", 422), ("GET", 200)]
    assert suite.elasticpath.orders[EP_ORDER][field] == value


async def test_a_fulfil_refused_for_another_reason_stays_rejected(
    suite: SimulatorSuite,
    live_adapter: Callable[..., PlatformAdapter],
    event_document: Documents,
    to_event: ToEvent,
) -> None:
    # A cancelled order refuses the fulfilment, and is not fulfilled: the refusal stands.
    suite.elasticpath.seed_order(EP_ORDER, status="cancelled")
    adapter = live_adapter(Platform.ELASTICPATH)
    attempt = await adapter.attempt(adapter.build_request(to_event(event_document("fulfilled"))))
    assert (attempt.verdict, attempt.status_code) == (Verdict.REJECT, 422)
    assert "cancelled" in attempt.message


async def test_a_409_write_conflict_is_retried_and_applied(
    suite: SimulatorSuite,
    live_adapter: Callable[..., PlatformAdapter],
    event_document: Documents,
    to_event: ToEvent,
) -> None:
    adapter = live_adapter(Platform.ELASTICPATH)
    settings = suite.platform_settings(Platform.ELASTICPATH, backoff_base_s=0.01)
    dispatcher = PlatformDispatcher(adapter, settings, Metrics())
    suite.elasticpath.faults.update(conflict_every=2)
    first = await dispatcher.deliver(adapter.build_request(to_event(event_document("us"))))
    # The second order update is answered 409; its retry is the third.
    second = await dispatcher.deliver(adapter.build_request(to_event(event_document("fulfilled"))))
    assert (first.outcome, first.attempts) == (Outcome.APPLIED, 1)
    assert (second.outcome, second.attempts, second.status_code) == (Outcome.APPLIED, 2, 200)
    assert [e.status for e in suite.elasticpath.log] == [200, 409, 200]
    assert suite.elasticpath.orders[EP_ORDER]["shipping"] == "fulfilled"


async def test_the_state_read_after_a_refusal_carries_the_refused_request_trace(
    suite: SimulatorSuite,
    live_adapter: Callable[..., PlatformAdapter],
    event_document: Documents,
    to_event: ToEvent,
) -> None:
    # The GET is part of the same delivery: it must be findable by the trace its PUT carried.
    adapter = live_adapter(Platform.ELASTICPATH)
    trace = TraceContext.new()
    built = adapter.build_request(to_event(event_document("fulfilled")))
    request = dataclasses.replace(built, headers=(*built.headers, *trace.http_headers()))
    assert (await adapter.attempt(request)).verdict is Verdict.APPLIED
    assert (await adapter.attempt(request)).verdict is Verdict.APPLIED
    log = suite.elasticpath.log.for_order(EP_ORDER)
    assert [(e.method, e.header("traceparent")) for e in log] == [
        ("PUT", trace.traceparent),
        ("PUT", trace.traceparent),
        ("GET", trace.traceparent),
    ]
