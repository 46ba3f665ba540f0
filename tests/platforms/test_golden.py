"""Every golden event's exact request per platform, checked in under tests/golden/requests.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/platforms/test_golden.py`
and review the diff; without it, any difference fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from connector.commands.validate import exact_json
from connector.errors import UnmappableError
from connector.models import OrderChangedEvent, Platform
from connector.platforms.base import PlatformAdapter, Verdict
from tests.platforms.conftest import GOLDEN, golden_event

REQUESTS = GOLDEN / "requests"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
EVENT_NAMES = sorted(path.stem for path in (GOLDEN / "events").glob("*.json"))
CASES = [(name, platform) for name in EVENT_NAMES for platform in golden_event(name).targets.platforms()]


def golden_request(adapter: PlatformAdapter, event: OrderChangedEvent) -> bytes:
    try:
        request = adapter.build_request(event)
    except UnmappableError as exc:
        document: object = {"unmappable": {"field": exc.field, "message": str(exc)}}
    else:
        document = {
            "method": request.method,
            "url": request.url,
            "headers": [list(header) for header in request.headers],
            "auth_headers": [list(header) for header in adapter.authenticator.masked_headers()],
            "body": exact_json(request.body),
        }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def golden_path(name: str, platform: Platform) -> Path:
    return REQUESTS / f"{name}.{platform.value}.json"


@pytest.mark.parametrize(("name", "platform"), CASES, ids=[f"{n}-{p.value}" for n, p in CASES])
def test_request_matches_golden(
    name: str, platform: Platform, offline_adapter: Callable[[Platform], PlatformAdapter]
) -> None:
    actual = golden_request(offline_adapter(platform), golden_event(name))
    path = golden_path(name, platform)
    if UPDATE:
        path.write_bytes(actual)
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert actual.decode() == path.read_text(encoding="utf-8")


def test_no_golden_request_without_its_event() -> None:
    expected = {golden_path(name, platform).name for name, platform in CASES}
    assert {path.name for path in REQUESTS.glob("*.json")} == expected


def test_goldens_cover_the_cases_that_matter() -> None:
    unmappable = {
        (name, platform)
        for name, platform in CASES
        if b'"unmappable"' in golden_path(name, platform).read_bytes()
    }
    assert ("missing_state", Platform.SELLERCLOUD) in unmappable
    assert ("missing_ids", Platform.ELASTICPATH) in unmappable
    assert len(unmappable) < len(CASES) / 2


@pytest.mark.parametrize("name", EVENT_NAMES)
async def test_simulators_accept_every_mappable_golden_request(
    name: str, live_adapter: Callable[..., PlatformAdapter]
) -> None:
    event = golden_event(name)
    for platform in event.targets.platforms():
        adapter = live_adapter(platform)
        try:
            request = adapter.build_request(event)
        except UnmappableError:
            continue
        attempt = await adapter.attempt(request)
        assert attempt.verdict is Verdict.APPLIED, (platform, attempt)
