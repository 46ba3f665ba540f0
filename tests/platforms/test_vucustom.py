from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from connector.devtools.simulators.server import SimulatorSuite
from connector.errors import UnmappableError
from connector.models import OrderChangedEvent, Platform
from connector.platforms.base import PlatformAdapter, Verdict
from tests.platforms.conftest import golden_event

Documents = Callable[..., dict[str, Any]]
ToEvent = Callable[[dict[str, Any]], OrderChangedEvent]


@pytest.fixture
def adapter(offline_adapter: Callable[[Platform], PlatformAdapter]) -> PlatformAdapter:
    return offline_adapter(Platform.VUCUSTOM)


@pytest.mark.parametrize(
    ("target", "query"),
    [
        ({"id": 432}, "id=432"),
        ({"id": 432, "order_number": "ignored"}, "id=432"),
        ({"order_number": "VU 7&x=1"}, "order_number=VU%207%26x%3D1"),
        ({}, "order_number=ord-12s3425"),
    ],
)
def test_order_is_addressed_by_id_then_order_number_then_canonical_number(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, target: dict[str, Any], query: str
) -> None:
    document = event_document("us")
    document["targets"]["vucustom"] = target
    request = adapter.build_request(to_event(document))
    assert (request.method, request.url) == ("PUT", f"https://os.vucustom.com/api/v1/orders?{query}")


def test_body_holds_only_the_updatable_fields_the_event_knows(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    document = event_document("us")
    document["order"].update(customer_note="call first", sales_order_number=None)
    document["order"]["ship_method"] = {"carrier": "fedex", "code": None, "description": "Ground"}
    body = orjson.loads(adapter.build_request(to_event(document)).body)
    assert body == {
        "order": {
            "note": "call first",
            "purchase_order_number": "po-123",
            "ship_method_carrier": "fedex",
            "ship_method_description": "Ground",
        }
    }


def test_an_event_not_targeting_vucustom_is_unmappable(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    document = event_document("us")
    del document["targets"]["vucustom"]
    with pytest.raises(UnmappableError) as raised:
        adapter.build_request(to_event(document))
    assert raised.value.field == "targets.vucustom"


async def test_answer_is_the_full_order_with_the_change_applied(
    live_adapter: Callable[..., PlatformAdapter],
    event_document: Documents,
    to_event: ToEvent,
    suite: SimulatorSuite,
) -> None:
    document = event_document("us")
    document["order"]["customer_note"] = "gift"
    adapter = live_adapter(Platform.VUCUSTOM)
    attempt = await adapter.attempt(adapter.build_request(to_event(document)))
    assert attempt.verdict is Verdict.APPLIED
    order = suite.vucustom.orders[432]
    assert order["note"] == "gift"
    assert {"ship_to", "sold_to", "order_lines", "custom_attributes"} <= set(order)


async def test_wrong_api_secret_is_rejected_as_auth(live_adapter: Callable[..., PlatformAdapter]) -> None:
    adapter = live_adapter(Platform.VUCUSTOM, api_secret="not-the-secret")
    attempt = await adapter.attempt(adapter.build_request(golden_event("no_addresses")))
    assert (attempt.verdict, attempt.status_code) == (Verdict.REJECT, 401)
    assert "not-the-secret" not in f"{attempt.message}{attempt.response_excerpt}"
