"""Which pipelines a process runs, and their consumer groups."""

from __future__ import annotations

import pytest

from connector.config import load_settings
from connector.errors import ConfigError
from connector.models import Platform
from connector.pipeline.pipelines import group_of

ENABLED = {
    "ORDER_SYNC_PLATFORMS__VUCUSTOM__API_KEY": "k",
    "ORDER_SYNC_PLATFORMS__SELLERCLOUD__BASE_URL": "http://127.0.0.1:1/rest",
    "ORDER_SYNC_PLATFORMS__ELASTICPATH__ENABLED": "false",
}


def test_by_default_a_process_runs_the_intake_and_every_enabled_platform() -> None:
    settings = load_settings(environ=ENABLED)
    assert settings.runs_intake()
    assert settings.delivery_pipelines() == [Platform.VUCUSTOM, Platform.SELLERCLOUD]


def test_pipelines_selects_a_subset_from_a_comma_separated_list() -> None:
    settings = load_settings(environ={**ENABLED, "ORDER_SYNC_PIPELINES": " Sellercloud "})
    assert not settings.runs_intake()
    assert settings.delivery_pipelines() == [Platform.SELLERCLOUD]
    intake_only = load_settings(environ={**ENABLED, "ORDER_SYNC_PIPELINES": "intake"})
    assert intake_only.runs_intake() and intake_only.delivery_pipelines() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [("shopify", "unknown pipeline 'shopify'"), ("intake,elasticpath", "elasticpath is not enabled")],
)
def test_an_unknown_or_disabled_pipeline_fails_at_start_up(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={**ENABLED, "ORDER_SYNC_PIPELINES": value})


def test_groups_are_the_base_for_the_intake_and_base_dot_platform_for_the_others() -> None:
    settings = load_settings(environ={**ENABLED, "ORDER_SYNC_KAFKA__GROUP_ID": "sync"})
    assert group_of(settings, "intake") == "sync"
    assert group_of(settings, "sellercloud") == "sync.sellercloud"
