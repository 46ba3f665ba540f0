"""Issue 17: the AsyncAPI document validates against the AsyncAPI 3.0.0 specification's own schema."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from connector.commands import asyncapi

ROOT = Path(__file__).resolve().parents[2]
SPEC = Path(__file__).parents[1] / "asyncapi" / "asyncapi-3.0.0.schema.json"
ORDER_SYNC = str(Path(sys.executable).with_name("order-sync"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    spec = orjson.loads(SPEC.read_bytes())
    # The bundled spec schema holds every definition it refers to under its own `$id`.
    registry: Registry[Any] = Registry().with_resources(
        (definition["$id"], Resource.from_contents(definition, default_specification=DRAFT7))
        for definition in spec["definitions"].values()
        if "$id" in definition
    )
    return jsonschema.Draft7Validator(spec, registry=registry)


def checked_in() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "schemas" / asyncapi.NAME).read_text())
    return document


def test_the_checked_in_document_is_the_generated_one() -> None:
    assert (ROOT / "schemas" / asyncapi.NAME).read_bytes() == asyncapi.render()


def test_the_document_is_valid_asyncapi_3(validator: jsonschema.Draft7Validator) -> None:
    errors = sorted(validator.iter_errors(checked_in()), key=lambda e: list(e.absolute_path))
    assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["operations"]["publishFailed"].update(action="publish"),  # AsyncAPI 2 wording
        lambda d: d["channels"]["orderChanged"].update(address=42),
        lambda d: d.pop("info"),
        lambda d: d["components"]["messages"]["syncResult"]["bindings"]["kafka"].update(key=7),
    ],
)
def test_the_spec_schema_refuses_a_broken_document(
    validator: jsonschema.Draft7Validator, breakage: Any
) -> None:
    document = copy.deepcopy(checked_in())
    breakage(document)
    assert not validator.is_valid(document)


def test_every_channel_operation_and_payload_reference_resolves() -> None:
    document = checked_in()
    messages = document["components"]["messages"]
    for channel in document["channels"].values():
        for reference in channel["messages"].values():
            assert reference["$ref"].removeprefix("#/components/messages/") in messages
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in document["channels"]
        for reference in operation["messages"]:
            name = reference["$ref"].removeprefix(f"#/channels/{channel}/messages/")
            assert name in document["channels"][channel]["messages"]
    payloads = [m["payload"]["$ref"] for m in messages.values() if "$ref" in m["payload"]]
    assert payloads == ["./order-changed.v1.json", "./order-sync-result.v1.json"]
    for payload in payloads:
        schema = orjson.loads((ROOT / "schemas" / payload).read_bytes())
        assert schema["$id"] == payload.removeprefix("./")
    for message in messages.values():
        headers = message.get("headers", {"properties": {}})  # control and status records have none
        assert set(headers.get("required", [])) <= set(headers["properties"])


@pytest.mark.slow
def test_schemas_check_covers_the_asyncapi_document(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ORDER_SYNC, "schemas", *args], capture_output=True, text=True, check=False)

    assert run("--dir", str(tmp_path)).returncode == 0
    assert run("--check", "--dir", str(tmp_path)).returncode == 0
    document = tmp_path / asyncapi.NAME
    document.write_text(document.read_text().replace("orders.sync.failed", "orders.failed"))
    result = run("--check", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert asyncapi.NAME in result.stderr
