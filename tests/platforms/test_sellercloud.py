from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from connector.errors import UnmappableError
from connector.models import OrderChangedEvent, Platform
from connector.platforms.base import PlatformAdapter
from connector.platforms.sellercloud import ADDRESS_FIELDS

Documents = Callable[..., dict[str, Any]]
ToEvent = Callable[[dict[str, Any]], OrderChangedEvent]
REQUIRED = [canonical for _, canonical, required in ADDRESS_FIELDS if required]


@pytest.fixture
def adapter(offline_adapter: Callable[[Platform], PlatformAdapter]) -> PlatformAdapter:
    return offline_adapter(Platform.SELLERCLOUD)


def build_body(adapter: PlatformAdapter, to_event: ToEvent, document: dict[str, Any]) -> Any:
    return orjson.loads(adapter.build_request(to_event(document)).body)


def test_only_known_fields_are_sent_and_the_address_whole(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    document = event_document("us")
    document["targets"]["sellercloud"] = {"order_id": 9}
    body = build_body(adapter, to_event, document)
    assert set(body) == {"CurrencyCode", "ShippingAddress"}
    assert set(body["ShippingAddress"]) == {name for name, _, _ in ADDRESS_FIELDS}


@pytest.mark.parametrize("field", REQUIRED)
@pytest.mark.parametrize("value", [None, "", "  "])
def test_missing_required_address_field_is_unmappable_naming_it(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, field: str, value: str | None
) -> None:
    document = event_document("us")
    document["order"]["billing_address"] = {**document["order"]["shipping_address"], field: value}
    with pytest.raises(UnmappableError) as raised:
        adapter.build_request(to_event(document))
    assert raised.value.field == f"order.billing_address.{field}"


@pytest.mark.parametrize(
    ("country", "state_required"), [("US", True), ("ca", True), ("MX", False), ("GB", False)]
)
def test_state_is_required_for_us_and_canada_only(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent, country: str, state_required: bool
) -> None:
    document = event_document("us")
    document["order"]["shipping_address"].update(country=country, state=None)
    if state_required:
        with pytest.raises(UnmappableError, match="State") as raised:
            adapter.build_request(to_event(document))
        assert raised.value.field == "order.shipping_address.state"
    else:
        address = build_body(adapter, to_event, document)["ShippingAddress"]
        assert (address["Country"], address["State"]) == (country, None)


def test_country_must_be_a_two_letter_code(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    document = event_document("us")
    document["order"]["shipping_address"]["country"] = "USA"
    with pytest.raises(UnmappableError) as raised:
        adapter.build_request(to_event(document))
    assert raised.value.field == "order.shipping_address.country"


def test_missing_order_id_is_unmappable(
    adapter: PlatformAdapter, event_document: Documents, to_event: ToEvent
) -> None:
    document = event_document("us")
    document["targets"]["sellercloud"] = {"company_id": 12}
    with pytest.raises(UnmappableError, match=r"targets\.sellercloud\.order_id"):
        adapter.build_request(to_event(document))
