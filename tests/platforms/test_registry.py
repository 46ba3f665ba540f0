from __future__ import annotations

import pytest

from connector.config import PlatformsSettings
from connector.errors import ConfigError
from connector.models import Platform
from connector.observability.redaction import Redactor
from connector.platforms.auth import StaticHeaders, TokenAuthenticator
from connector.platforms.registry import ADAPTERS, build_adapter
from connector.platforms.transport import Transport
from tests.platforms.conftest import GOLDEN_SETTINGS


def test_every_platform_has_an_adapter() -> None:
    assert set(ADAPTERS) == set(Platform)
    assert all(adapter.platform is platform for platform, adapter in ADAPTERS.items())


@pytest.mark.parametrize(
    ("platform", "flow"),
    [
        (Platform.VUCUSTOM, StaticHeaders),
        (Platform.SELLERCLOUD, TokenAuthenticator),
        (Platform.ELASTICPATH, TokenAuthenticator),
        (Platform.VENTMERE, StaticHeaders),
    ],
)
def test_build_adapter_picks_the_platforms_auth_flow_and_registers_its_secrets(
    platform: Platform, flow: type
) -> None:
    redactor = Redactor()
    settings = PlatformsSettings.model_validate(GOLDEN_SETTINGS).get(platform)
    adapter = build_adapter(platform, settings, Transport(), redactor)
    assert isinstance(adapter, ADAPTERS[platform])
    assert isinstance(adapter.authenticator, flow)
    secrets = [
        value for value in GOLDEN_SETTINGS[platform.value].values() if "secret" in value or "pass" in value
    ]
    for secret in secrets:
        assert secret not in redactor.redact(f"leaked {secret}")


@pytest.mark.parametrize("platform", list(Platform))
def test_missing_credentials_are_a_config_error_naming_the_key(platform: Platform) -> None:
    settings = PlatformsSettings.model_validate({"ventmere": {"base_url": "https://v.example"}}).get(platform)
    with pytest.raises(ConfigError, match=rf"platforms\.{platform.value}\."):
        build_adapter(platform, settings, Transport(), Redactor())
