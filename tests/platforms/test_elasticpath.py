from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from connector.errors import UnmappableError
from connector.models import OrderChangedEvent, Platform
from connector.platforms.base import PlatformAdapter, Verdict
from connector.simulators.server import SimulatorSuite

Documents = Callable[..., dict[str, Any]]
ToEvent = Callable[[dict[str, Any]], OrderChangedEvent]
EP_ORDER = "6c5a6f8e-41f6-4b4e-9d38-3f0f0b4a6a11"


@pytest.fixture
def adapter(offline_adapter: Callable[[Platform], PlatformAdapter]) -> PlatformAdapter:
    return offline_adapter(Platform.ELASTICPATH)


def data_of(adapter: PlatformAdapter, event: OrderChangedEvent) -> Any:
    return orjson.loads(adapter.build_request(event).body)["data"]


@pytest.mark.parametrize(
    ("status", "sent"),
    [("open", None), ("on_hold", None), ("cancelled", "cancelled"), ("fulfilled", "fulfilled")],
)
def test_status_is_sent_only_for_cancel_and_fulfil(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, status: str, sent: str | None
) -> None:
    document = event_document("us")
    document["order"]["status"] = status
    assert data_of(adapter, to_event(document)).get("status") == sent


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
