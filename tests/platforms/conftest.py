"""Adapters offline (fixed settings, no network) and against the simulators."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from connector.codec import decode_event
from connector.config import PlatformsSettings
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import OrderChangedEvent, Platform
from connector.observability.redaction import Redactor
from connector.platforms.base import PlatformAdapter
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport

GOLDEN = Path(__file__).parents[1] / "golden"

#: The settings golden requests are built with: default base URLs where there is one.
GOLDEN_SETTINGS: dict[str, Any] = {
    "vucustom": {"api_key": "golden-key", "api_secret": "golden-secret"},
    "sellercloud": {"server_id": "example", "username": "golden-user", "password": "golden-password"},
    "elasticpath": {"client_id": "golden-client", "client_secret": "golden-client-secret"},
    "ventmere": {
        "base_url": "https://api.ventmere.example",
        "api_token": "golden-token",
        "organization_id": "95d73baf-76ba-4bea-86ac-1534c5e5d4aa",
    },
}


def golden_event(name: str) -> OrderChangedEvent:
    return decode_event((GOLDEN / "events" / f"{name}.json").read_bytes())


@pytest.fixture
def event_document() -> Callable[..., dict[str, Any]]:
    """A golden event as a dict to modify, e.g. `event_document("us")`."""

    def load(name: str = "us") -> dict[str, Any]:
        document: dict[str, Any] = orjson.loads((GOLDEN / "events" / f"{name}.json").read_bytes())
        return copy.deepcopy(document)

    return load


@pytest.fixture
def to_event() -> Callable[[dict[str, Any]], OrderChangedEvent]:
    return lambda document: decode_event(orjson.dumps(document))


@pytest.fixture
def offline_adapter() -> Callable[[Platform], PlatformAdapter]:
    """Adapters with fixed settings whose transport is never used (build_request is pure)."""
    settings = PlatformsSettings.model_validate(GOLDEN_SETTINGS)
    return lambda platform: build_adapter(platform, settings.get(platform), Transport(), Redactor())


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    shared = Transport()
    yield shared
    await shared.close()


@pytest.fixture
def live_adapter(suite: SimulatorSuite, transport: Transport) -> Callable[..., PlatformAdapter]:
    """`live_adapter(platform, **setting_overrides)`: an adapter pointed at the simulator suite."""

    def build(platform: Platform, **overrides: Any) -> PlatformAdapter:
        return build_adapter(platform, suite.platform_settings(platform, **overrides), transport, Redactor())

    return build
