"""Connections: declared by environment, `--config` and a watched directory; looked up per delivery."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from connector.config import SellercloudSettings, load_settings
from connector.delivery.connectionfiles import ConnectionFiles
from connector.delivery.connections import ConnectionRegistry
from connector.delivery.runner import DeliveryRunner
from connector.errors import ConfigError
from connector.models import ErrorCategory, OrderChangedEvent, Platform, Source
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor
from connector.platforms.transport import Transport
from connector.stores.guard import StoreGuard
from connector.stores.memory import MemoryStore
from tests.support.events import make_event

SC = "ORDER_SYNC_PLATFORMS__SELLERCLOUD__"
BASE = {
    SC + "BASE_URL": "https://main.example/rest",
    SC + "USERNAME": "main-user",
    SC + "PASSWORD": "main-password",
    SC + "RATE_LIMIT_RPS": "7",
}


def registry_of(environ: dict[str, str]) -> ConnectionRegistry:
    settings = load_settings(environ=environ)
    return ConnectionRegistry.from_settings(
        settings, settings.platforms.enabled(), Transport(), Redactor(), Metrics()
    )


def test_a_connection_from_the_environment_inherits_every_key_it_does_not_set() -> None:
    settings = load_settings(
        environ={
            **BASE,
            SC + "CONNECTIONS__EU__BASE_URL": "https://eu.example/rest",
            SC + "CONNECTIONS__EU__PASSWORD": "eu-password",
        }
    )
    own = settings.platforms.sellercloud
    eu = own.for_connection(own.connections["eu"])
    assert isinstance(eu, SellercloudSettings)
    assert eu.resolved_base_url() == "https://eu.example/rest"
    assert eu.password is not None and eu.password.get_secret_value() == "eu-password"
    assert eu.username == "main-user"
    assert eu.rate_limit_rps == 7
    registry = registry_of({**BASE, SC + "CONNECTIONS__EU__PASSWORD": "eu-password"})
    assert registry.names(Platform.SELLERCLOUD) == ["default", "eu"]


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("CONNECTIONS__EU__RATE_LIMIT_RPS", "-1", "connections.eu.rate_limit_rps"),
        ("CONNECTIONS__EU__NO_SUCH_KEY", "1", "connections.eu.no_such_key"),
        ("CONNECTIONS__DEFAULT__PASSWORD", "x", "connections.default"),
        ("CONNECTIONS__EU_WEST__PASSWORD", "x", "connections.eu_west"),
    ],
)
def test_a_bad_connection_fails_start_up_naming_the_key(key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(environ={**BASE, SC + key: value})


def test_a_connection_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"platforms": {"sellercloud": {"connections": {"us-2": {"password": "us-password"}}}}})
    )
    settings = load_settings(config, environ=BASE)
    assert set(settings.platforms.sellercloud.connections) == {"us-2"}


def test_a_secret_may_be_given_as_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    settings = load_settings(
        environ={**BASE, SC + "CONNECTIONS__EU__PASSWORD_FILE": str(secret)} | {SC + "PASSWORD": "x"}
    )
    own = settings.platforms.sellercloud
    eu = own.for_connection(own.connections["eu"])
    assert eu.password is not None and eu.password.get_secret_value() == "from-a-file"
    main = load_settings(
        environ={**{k: v for k, v in BASE.items() if k != SC + "PASSWORD"}, SC + "PASSWORD_FILE": str(secret)}
    )
    password = main.platforms.sellercloud.password
    assert password is not None and password.get_secret_value() == "from-a-file"
    with pytest.raises(ConfigError, match="password_file"):
        load_settings(environ={**BASE, SC + "CONNECTIONS__EU__PASSWORD_FILE": str(tmp_path / "missing")})


def test_a_platform_with_only_connections_has_no_default_connection() -> None:
    registry = registry_of(
        {
            SC + "CONNECTIONS__EU__BASE_URL": "https://eu.example/rest",
            SC + "CONNECTIONS__EU__USERNAME": "u",
            SC + "CONNECTIONS__EU__PASSWORD": "p",
        }
    )
    assert registry.names(Platform.SELLERCLOUD) == ["eu"]


def write(directory: Path, name: str, document: dict[str, object]) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_directory_adds_changes_and_removes_connections(tmp_path: Path) -> None:
    settings = load_settings(environ=BASE)
    registry = ConnectionRegistry.from_settings(
        settings, [Platform.SELLERCLOUD], Transport(), Redactor(), Metrics()
    )
    files = ConnectionFiles(tmp_path, settings.platforms)
    assert files.scan() == []
    eu = write(tmp_path, "eu.yaml", {"platform": "sellercloud", "name": "EU", "password": "one"})
    declared = files.scan()
    assert declared is not None
    assert registry.apply_files(declared).added == ("sellercloud/eu",)
    first = registry.dispatcher(Platform.SELLERCLOUD, "eu")
    assert first is not None
    assert files.scan() is None  # nothing changed: nothing read again
    write(tmp_path, "eu.yaml", {"platform": "sellercloud", "name": "eu", "password": "two-longer"})
    declared = files.scan()
    assert declared is not None
    assert registry.apply_files(declared).changed == ("sellercloud/eu",)
    assert registry.dispatcher(Platform.SELLERCLOUD, "eu") is not first
    eu.unlink()
    declared = files.scan()
    assert declared == []
    assert registry.apply_files(declared).removed == ("sellercloud/eu",)
    assert registry.dispatcher(Platform.SELLERCLOUD, "eu") is None
    assert registry.names(Platform.SELLERCLOUD) == ["default"]


def test_a_file_with_an_error_is_refused_naming_file_and_key_and_keeps_what_ran(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(environ=BASE)
    files = ConnectionFiles(tmp_path, settings.platforms)
    path = write(tmp_path, "eu.yaml", {"platform": "sellercloud", "name": "eu", "rate_limit_rps": 2})
    assert [d.settings.rate_limit_rps for d in files.scan() or []] == [2]
    write(tmp_path, "eu.yaml", {"platform": "sellercloud", "name": "eu", "rate_limit_rps": "fast"})
    with caplog.at_level(logging.ERROR):
        declared = files.scan()
    assert [d.settings.rate_limit_rps for d in declared or []] == [2]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert str(path) in refusals[0] and "rate_limit_rps" in refusals[0]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert files.scan() is None  # logged once per change, not on every scan
    assert not caplog.records
    write(tmp_path, "other.yaml", {"platform": "nowhere", "name": "x"})
    write(tmp_path, "twin.yaml", {"platform": "sellercloud", "name": "eu"})
    with caplog.at_level(logging.ERROR):
        declared = files.scan()
    assert [(d.name, d.source) for d in declared or []] == [("eu", str(path))]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "other.yaml: platform" in messages and "twin.yaml" in messages


def test_a_rotated_secret_file_is_a_changed_connection(tmp_path: Path) -> None:
    settings = load_settings(environ=BASE)
    files = ConnectionFiles(tmp_path / "conns", settings.platforms)
    (tmp_path / "conns").mkdir()
    secret = tmp_path / "password"
    secret.write_text("first")
    write(
        tmp_path / "conns", "eu.yaml", {"platform": "sellercloud", "name": "eu", "password_file": str(secret)}
    )
    first = files.scan()
    assert first is not None and first[0].settings.password is not None
    assert first[0].settings.password.get_secret_value() == "first"
    replacement = tmp_path / "password.new"
    replacement.write_text("second-one")
    replacement.replace(secret)  # as a Secret updated in place swaps the file
    second = files.scan()
    assert second is not None and second[0].settings.password is not None
    assert second[0].settings.password.get_secret_value() == "second-one"


def test_a_file_cannot_take_over_a_connection_the_configuration_declares(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = registry_of({**BASE, SC + "CONNECTIONS__EU__PASSWORD": "eu-password"})
    configured = registry.dispatcher(Platform.SELLERCLOUD, "eu")
    settings = load_settings(environ=BASE)
    files = ConnectionFiles(tmp_path, settings.platforms)
    write(tmp_path, "eu.yaml", {"platform": "sellercloud", "name": "eu", "password": "other"})
    with caplog.at_level(logging.ERROR):
        changes = registry.apply_files(files.scan() or [])
    assert not changes
    assert registry.dispatcher(Platform.SELLERCLOUD, "eu") is configured
    assert "declared in the configuration already" in caplog.text


async def test_a_delivery_to_a_connection_not_configured_is_unmappable_naming_it() -> None:
    registry = registry_of(BASE)
    store = MemoryStore()
    runner = DeliveryRunner(registry, StoreGuard(store, Metrics()), None, Metrics(), "a", 30)  # type: ignore[arg-type]
    event = OrderChangedEvent.model_validate(
        make_event("ord-1", 1, {"sellercloud": {"order_id": 5, "connection": "EU"}})
    )
    delivery = runner.prepare(event, Platform.SELLERCLOUD, Source("orders", 0, 1), None)
    assert delivery.key.connection == "eu"
    assert delivery.request is None and delivery.unmappable is not None
    assert delivery.unmappable.category is ErrorCategory.MAPPING
    assert "'eu'" in delivery.unmappable.message
    other = OrderChangedEvent.model_validate(make_event("ord-1", 2, {"sellercloud": {"order_id": 5}}))
    known = runner.prepare(other, Platform.SELLERCLOUD, Source("o", 0, 2), None)
    assert known.request is not None and known.request.url.startswith("https://main.example/rest/")
