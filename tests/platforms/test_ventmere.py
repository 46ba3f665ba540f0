from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from connector.errors import UnmappableError
from connector.models import OrderChangedEvent, Platform
from connector.platforms.base import PlatformAdapter
from tests.platforms.conftest import GOLDEN, golden_event

Documents = Callable[..., dict[str, Any]]
ToEvent = Callable[[dict[str, Any]], OrderChangedEvent]
PAGE_EXAMPLE: dict[str, Any] = json.loads((GOLDEN / "ventmere_page_example.json").read_text(encoding="utf-8"))
#: Fields of the page's table absent from its example, with the "no value" the table prescribes.
TABLE_ONLY = {"shipByDate": None, "deliveryByDate": None, "customerNote": ""}


@pytest.fixture
def adapter(offline_adapter: Callable[[Platform], PlatformAdapter]) -> PlatformAdapter:
    return offline_adapter(Platform.VENTMERE)


def test_seed_event_produces_the_page_example_body(adapter: PlatformAdapter) -> None:
    request = adapter.build_request(golden_event("ventmere_page"))
    body = orjson.loads(request.body)
    table_only = {name: body.pop(name) for name in TABLE_ONLY}
    assert body == PAGE_EXAMPLE
    assert list(body) == list(PAGE_EXAMPLE)
    assert table_only == TABLE_ONLY
    assert request.url == "https://api.ventmere.example/order/ae52b0ab-8f0c-4b11-9c13-c5c221228ecd"


def test_no_value_is_spelled_as_the_page_prescribes(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    body = orjson.loads(adapter.build_request(golden_event("no_addresses")).body)
    assert body["shippingAddress"] is None and body["billingAddress"] is None
    assert (body["channelShippingMethod"], body["customerNote"], body["channelOrderIdAlt"]) == ("", "", "")
    assert (body["items"], body["attachments"], body["meta"]) == ([], [], {})
    document = event_document("us")
    document["order"]["shipping_address"] = {"first_name": "Ann"}
    document["order"]["lines"][0]["product_id"] = None
    body = orjson.loads(adapter.build_request(to_event(document)).body)
    assert body["shippingAddress"] == {**dict.fromkeys(PAGE_EXAMPLE["shippingAddress"], ""), "name": "Ann"}
    assert body["items"][0] == {
        "channelOrderItemId": "0",
        "productId": "",
        "quantity": 2,
        "unitPrice": 9.99,
        "meta": {},
    }


def test_unit_price_is_a_json_number_with_every_digit(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    document = event_document("us")
    document["order"]["lines"][0]["unit_price"] = "999999999999999.999999"
    assert b'"unitPrice":999999999999999.999999,' in adapter.build_request(to_event(document)).body


def test_times_are_sent_in_utc(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    document = event_document("us")
    document["order"].update(order_date="2024-01-01T01:00:00+02:00", ship_by_date="2024-01-02T00:00:00-05:00")
    body = orjson.loads(adapter.build_request(to_event(document)).body)
    assert (body["channelOrderDate"], body["shipByDate"]) == (
        "2023-12-31T23:00:00.000Z",
        "2024-01-02T05:00:00.000Z",
    )


@pytest.mark.parametrize("missing", ["order_id", "account_id"])
def test_missing_target_ids_are_unmappable(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, missing: str
) -> None:
    document = event_document("us")
    del document["targets"]["ventmere"][missing]
    with pytest.raises(UnmappableError) as raised:
        adapter.build_request(to_event(document))
    assert raised.value.field == f"targets.ventmere.{missing}"
