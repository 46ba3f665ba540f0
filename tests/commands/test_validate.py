"""`order-sync validate`: requests printed with credentials masked, unmappable reasons, exit codes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from connector.commands.cli import cli
from connector.commands.validate import validate_file
from connector.config import load_settings

EVENTS = Path(__file__).parents[1] / "golden" / "events"
SECRETS = {
    "vucustom": {"api_key": "vu-key-0001", "api_secret": "vu-secret-0002"},
    "sellercloud": {
        "base_url": "https://tt.api.sellercloud.com/rest",
        "username": "sc-user",
        "password": "sc-pw-0003",
    },
    "elasticpath": {"client_id": "ep-client", "client_secret": "ep-secret-0004"},
    "ventmere": {"base_url": "https://vm.example", "api_token": "vm-token-0005", "organization_id": "org-1"},
}


@pytest.fixture(autouse=True)
def no_connector_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("ORDER_SYNC_"):
            monkeypatch.delenv(name)


def run(file: Path, config: Path | None = None) -> tuple[int, str]:
    out = io.StringIO()
    return validate_file(file, load_settings(config), out), out.getvalue()


def test_prints_each_platforms_request_with_placeholders_and_no_credentials() -> None:
    code, output = run(EVENTS / "us.json")
    assert code == 0
    assert "PUT https://os.vucustom.com/api/v1/orders?id=432" in output
    assert "PUT https://{server_id}.api.sellercloud.com/rest/api/Orders/5012345" in output
    assert "PUT https://useast.api.elasticpath.com/v2/orders/6c5a6f8e-41f6-4b4e-9d38-3f0f0b4a6a11" in output
    assert "PUT https://api.ventmere.example/order/ae52b0ab-8f0c-4b11-9c13-c5c221228ecd" in output
    assert "Authorization: Basic ***" in output and "Authorization: Bearer ***" in output
    assert '"ship_method_code": "ups_standard"' in output


def test_configured_secrets_never_appear(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"platforms": SECRETS}))
    code, output = run(EVENTS / "us.json", config)
    assert code == 0
    assert "PUT https://tt.api.sellercloud.com/rest/api/Orders/5012345" in output
    assert "X-S2-Organization: org-1" in output
    for platform in SECRETS.values():
        for name, value in platform.items():
            if "secret" in name or "password" in name or "token" in name or "key" in name:
                assert value not in output


def test_unmappable_platforms_say_why() -> None:
    code, output = run(EVENTS / "missing_state.json")
    assert code == 0
    assert (
        "sellercloud: unmappable: order.shipping_address.state: sellercloud requires State when Country is CA"
        in (output)
    )
    assert "PUT https://os.vucustom.com" in output


def test_jsonl_with_an_invalid_event_exits_1(tmp_path: Path) -> None:
    good = orjson.loads((EVENTS / "us.json").read_bytes())
    bad = {**good, "order": {**good["order"], "currency": "dollars"}}
    file = tmp_path / "events.jsonl"
    file.write_bytes(b"\n".join([orjson.dumps(good), b"", orjson.dumps(bad), b"{not json"]) + b"\n")
    code, output = run(file)
    assert code == 1
    assert "line 1: valid" in output
    assert "line 3: invalid (schema): order.currency" in output
    assert "line 4: invalid (decode)" in output
    assert "events: 1 valid, 2 invalid" in output


def test_a_json_array_of_events_is_validated_item_by_item(tmp_path: Path) -> None:
    events = [orjson.loads((EVENTS / name).read_bytes()) for name in ("us.json", "cancelled.json")]
    file = tmp_path / "events.json"
    file.write_bytes(orjson.dumps(events))
    code, output = run(file)
    assert (code, output.count(": valid: order ord-12s3425")) == (0, 2)


def test_disabled_platform_is_not_shown_as_sent(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"platforms": {"ventmere": {"enabled": False}}}))
    code, output = run(EVENTS / "us.json", config)
    assert code == 0
    assert "ventmere: disabled in the configuration" in output


def test_cli_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["validate", str(EVENTS / "us.json")]).exit_code == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert runner.invoke(cli, ["validate", str(empty)]).exit_code == 1
    broken = tmp_path / "broken.json"
    broken.write_text('{"event_id": 1}')
    result = runner.invoke(cli, ["validate", str(broken)])
    assert result.exit_code == 1 and "invalid (schema)" in result.output
