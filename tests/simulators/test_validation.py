"""Each simulator's auth and the validation its platform page describes, with the field named."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.simulators.conftest import SimulatorClient

VENTMERE_EXAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "golden" / "ventmere_page_example.json").read_text(encoding="utf-8")
)
SC_ADDRESS = {
    "FirstName": "John",
    "LastName": "Smith",
    "MiddleName": None,
    "ZipCode": "07450",
    "City": "Ridgewood",
    "Country": "US",
    "Business": None,
    "AddressLine1": "123 Main St",
    "AddressLine2": "",
    "Fax": None,
    "Region": None,
    "State": "NJ",
    "Phone": None,
}
EP_ADDRESS = dict.fromkeys(
    [
        "first_name",
        "last_name",
        "phone_number",
        "company_name",
        "line_1",
        "line_2",
        "city",
        "county",
        "region",
        "postcode",
        "country",
        "instructions",
    ],
    "",
)


# VU Custom


async def test_vucustom_answers_the_full_order_object(client: SimulatorClient) -> None:
    status, body, _ = await client.put(Platform.VUCUSTOM, "/api/v1/orders?order_number=ord-9", {"order": {}})
    assert status == 200
    assert body["order"]["order_number"] == "ord-9"
    assert {"id", "ship_to", "sold_to", "order_lines", "tags", "created_at", "updated_at"} <= set(
        body["order"]
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/v1/orders?id=1", {"order": {"order_number": "x"}}, 422, "order.order_number"),
        ("/api/v1/orders?id=1", {"order": {"note": 5}}, 422, "order.note"),
        ("/api/v1/orders", {"order": {}}, 422, "id"),
        ("/api/v1/orders?id=1", {"notes": {}}, 422, "notes"),
    ],
)
async def test_vucustom_refuses_what_it_cannot_update(
    client: SimulatorClient, path: str, body: Any, status: int, field: str
) -> None:
    answered, answer, _ = await client.put(Platform.VUCUSTOM, path, body)
    assert (answered, list(answer["errors"])) == (status, [field])


async def test_vucustom_checks_basic_auth(client: SimulatorClient) -> None:
    status, _, _ = await client.put(
        Platform.VUCUSTOM, "/api/v1/orders?id=1", {"order": {}}, headers={"Authorization": "Basic eDp5"}
    )
    assert status == 401


# Sellercloud


async def test_sellercloud_applies_a_whole_address(suite: SimulatorSuite, client: SimulatorClient) -> None:
    body = {"CompanyId": 1, "CurrencyCode": "USD", "ShippingAddress": SC_ADDRESS}
    assert (await client.put(Platform.SELLERCLOUD, "/api/Orders/77", body))[0] == 200
    assert suite.sellercloud.orders[77]["ShippingAddress"] == SC_ADDRESS


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"State": None}, "ShippingAddress.State"),
        ({"State": ""}, "ShippingAddress.State"),
        ({"Country": "CA", "State": None}, "ShippingAddress.State"),
        ({"ZipCode": None}, "ShippingAddress.ZipCode"),
        ({"Country": "USA"}, "ShippingAddress.Country"),
    ],
)
async def test_sellercloud_refuses_an_incomplete_address_naming_the_field(
    client: SimulatorClient, change: dict[str, Any], field: str
) -> None:
    body = {"ShippingAddress": {**SC_ADDRESS, **change}}
    status, answer, _ = await client.put(Platform.SELLERCLOUD, "/api/Orders/77", body)
    assert (status, list(answer["ModelState"])) == (400, [field])


async def test_sellercloud_wants_every_address_field_and_no_unknown_one(client: SimulatorClient) -> None:
    partial = {name: value for name, value in SC_ADDRESS.items() if name != "Fax"}
    status, answer, _ = await client.put(Platform.SELLERCLOUD, "/api/Orders/77", {"BillingAddress": partial})
    assert (status, list(answer["ModelState"])) == (400, ["BillingAddress.Fax"])
    status, answer, _ = await client.put(Platform.SELLERCLOUD, "/api/Orders/77", {"Status": "Shipped"})
    assert (status, list(answer["ModelState"])) == (400, ["Status"])


async def test_sellercloud_without_a_valid_token_is_401(client: SimulatorClient) -> None:
    status, answer, _ = await client.put(
        Platform.SELLERCLOUD, "/api/Orders/77", {}, headers={"Authorization": "Bearer forged"}
    )
    assert (status, answer["Message"]) == (401, "Not Valid Token")


async def test_sellercloud_token_answer_has_the_documented_fields(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    credentials = {"Username": suite.sellercloud.username, "Password": suite.sellercloud.password}
    async with client.session.post(
        client.url(Platform.SELLERCLOUD, "/api/token"), json=credentials
    ) as response:
        answer = await response.json()
    assert set(answer) == {"access_token", "token_type", "expires_in", ".issued", ".expires"}
    async with client.session.post(
        client.url(Platform.SELLERCLOUD, "/api/token"), json={**credentials, "Password": "nope"}
    ) as response:
        assert response.status == 401


# Elastic Path


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"shipping_address": {**EP_ADDRESS, "city": None}}, "data.shipping_address.city"),
        ({"status": "cancelled", "external_ref": "r" * 65}, "data.external_ref"),
        ({"status": "shipped"}, "data.status"),
        # Fulfilment is the shipping status; `status` takes only "cancelled".
        ({"status": "fulfilled"}, "data.status"),
        ({"shipping": "shipped"}, "data.shipping"),
        ({"type": "cart"}, "data.type"),
        ({"payment": "paid"}, "data.payment"),
        # The spec's oneOf: one body is an update, a cancel or a fulfilment, never two of them.
        ({"shipping_address": EP_ADDRESS, "status": "cancelled"}, "data"),
        ({"order_number": "n-1", "shipping": "fulfilled"}, "data"),
        ({"status": "cancelled", "shipping": "fulfilled"}, "data"),
        # The update shape requires the address; a body of no shape at all is none of the three.
        ({"order_number": "n-1"}, "data.shipping_address"),
        ({"external_ref": "r-1"}, "data.shipping_address"),
    ],
)
async def test_elasticpath_refuses_invalid_data_naming_the_field(
    client: SimulatorClient, data: dict[str, Any], field: str
) -> None:
    status, answer, _ = await client.put(
        Platform.ELASTICPATH, "/v2/orders/o-1", {"data": {"type": "order", **data}}
    )
    assert status == 422
    assert answer["errors"][0]["source"] == field


async def test_elasticpath_enforces_the_order_state_rules(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    suite.elasticpath.seed_order("unpaid", payment="unpaid", status="incomplete")
    fulfil = {"data": {"type": "order", "shipping": "fulfilled"}}
    assert (await client.put(Platform.ELASTICPATH, "/v2/orders/unpaid", fulfil))[0] == 422
    # Orders the simulator has not seen start paid.
    assert (await client.put(Platform.ELASTICPATH, "/v2/orders/paid", fulfil))[0] == 200
    assert suite.elasticpath.orders["paid"]["shipping"] == "fulfilled"
    cancel = {"data": {"type": "order", "status": "cancelled"}}
    update = {"data": {"type": "order", "shipping_address": EP_ADDRESS}}
    for body in (cancel, update, fulfil):
        status, answer, _ = await client.put(Platform.ELASTICPATH, "/v2/orders/paid", body)
        assert status == 422 and "fulfilled" in answer["errors"][0]["detail"], body
    assert (await client.put(Platform.ELASTICPATH, "/v2/orders/unpaid", cancel))[0] == 200
    assert suite.elasticpath.orders["unpaid"]["status"] == "cancelled"
    for body in (cancel, update, fulfil):
        status, answer, _ = await client.put(Platform.ELASTICPATH, "/v2/orders/unpaid", body)
        assert status == 422 and "cancelled" in answer["errors"][0]["detail"], body


async def test_elasticpath_token_needs_client_credentials(
    suite: SimulatorSuite, client: SimulatorClient
) -> None:
    url = client.url(Platform.ELASTICPATH, "/oauth/access_token")
    form = {"grant_type": "password", "client_id": suite.elasticpath.client_id}
    async with client.session.post(url, data=form) as response:
        assert response.status == 400
    form = {
        "grant_type": "client_credentials",
        "client_id": suite.elasticpath.client_id,
        "client_secret": "x",
    }
    async with client.session.post(url, data=form) as response:
        assert response.status == 401


# Ventmere


async def test_ventmere_accepts_the_page_example_and_answers_an_order(client: SimulatorClient) -> None:
    status, answer, _ = await client.put(Platform.VENTMERE, "/order/ae52b0ab", VENTMERE_EXAMPLE)
    assert status == 200, answer
    assert answer["id"] == "ae52b0ab"
    assert answer["account"] == {"id": VENTMERE_EXAMPLE["accountId"]}
    assert answer["items"][1]["product"] == {"id": "bab7c35b-2ecb-4b40-be82-8dc1e0a86171"}


def _without(path: list[str | int]) -> dict[str, Any]:
    body = copy.deepcopy(VENTMERE_EXAMPLE)
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return body


def _with(path: list[str | int], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(VENTMERE_EXAMPLE)
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_without(["meta"]), "meta"),
        (_with(["meta"], None), "meta"),
        (_with(["channelShippingMethod"], None), "channelShippingMethod"),
        (_without(["attachments"]), "attachments"),
        (_with(["customerNote"], None), "customerNote"),
        (_with(["channelOrderDate"], "2024-04-24T08:00:33.889+02:00"), "channelOrderDate"),
        (_with(["shipByDate"], "tomorrow"), "shipByDate"),
        (_without(["shippingAddress", "email"]), "shippingAddress.email"),
        (_with(["billingAddress", "phone"], None), "billingAddress.phone"),
        (_without(["items", 0, "meta"]), "items[0].meta"),
        (_with(["items", 1, "unitPrice"], "8.89"), "items[1].unitPrice"),
        (_with(["currencyId"], ""), "currencyId"),
    ],
)
async def test_ventmere_refuses_a_body_that_breaks_the_page_naming_the_field(
    client: SimulatorClient, body: dict[str, Any], field: str
) -> None:
    status, answer, _ = await client.put(Platform.VENTMERE, "/order/o-1", body)
    assert (status, answer["field"]) == (400, field)


async def test_ventmere_checks_token_and_organization(suite: SimulatorSuite, client: SimulatorClient) -> None:
    token = f"Bearer {suite.ventmere.api_token}"
    status, _, _ = await client.put(
        Platform.VENTMERE, "/order/o-1", VENTMERE_EXAMPLE, headers={"Authorization": token}
    )
    assert status == 403
    headers = {"Authorization": "Bearer wrong", "X-S2-Organization": suite.ventmere.organization_id}
    assert (await client.put(Platform.VENTMERE, "/order/o-1", VENTMERE_EXAMPLE, headers=headers))[0] == 401


# Shared


async def test_strict_ids_answer_404_for_unknown_orders() -> None:
    async with SimulatorSuite(strict_ids=True) as suite, aiohttp.ClientSession() as session:
        client = SimulatorClient(suite, session)
        assert (await client.put(Platform.VENTMERE, "/order/o-1", VENTMERE_EXAMPLE))[0] == 404
        suite.ventmere.seed_order("o-1")
        assert (await client.put(Platform.VENTMERE, "/order/o-1", VENTMERE_EXAMPLE))[0] == 200
        assert (await client.put(Platform.VUCUSTOM, "/api/v1/orders?id=5", {"order": {}}))[0] == 404
        suite.vucustom.seed_order(5)
        assert (await client.put(Platform.VUCUSTOM, "/api/v1/orders?id=5", {"order": {}}))[0] == 200
