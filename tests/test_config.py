"""load_settings: the environment over the YAML file, expected failures in one line, os.environ untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.config import load_settings
from connector.errors import ConfigError
from connector.models import Platform


class FrozenEnviron(dict[str, str]):
    """A process environment that fails the test when cleared or refilled (pytest writes only its own key)."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("os.environ was written")

    clear = update = popitem = setdefault = _refuse  # type: ignore[assignment]

    def __setitem__(self, key: str, value: str) -> None:
        if key != "PYTEST_CURRENT_TEST":
            self._refuse()
        super().__setitem__(key, value)


def test_a_given_environment_is_read_without_touching_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "environ", FrozenEnviron({**os.environ, "ORDER_SYNC_KAFKA__GROUP_ID": "process"}))
    settings = load_settings(environ={"ORDER_SYNC_KAFKA__GROUP_ID": "from-the-mapping"})
    assert settings.kafka.group_id == "from-the-mapping"
    assert os.environ["ORDER_SYNC_KAFKA__GROUP_ID"] == "process"


def test_a_given_environment_is_all_there_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_SYNC_MAX_INFLIGHT_EVENTS", "7")
    assert load_settings(environ={}).max_inflight_events == 1000
    assert load_settings().max_inflight_events == 7


def test_names_are_case_insensitive_and_nest_with_double_underscores() -> None:
    settings = load_settings(
        environ={
            "order_sync_platforms__sellercloud__server_id": "acme",
            "ORDER_SYNC_PLATFORMS__SELLERCLOUD__USERNAME": "u",
            "ORDER_SYNC_PLATFORMS__SELLERCLOUD__PASSWORD": "p",
        }
    )
    assert settings.platforms.sellercloud.server_id == "acme"
    assert Platform.SELLERCLOUD in settings.platforms.enabled()


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("kafka:\n  group_id: from-file\n  input_topic: in-file\nmax_inflight_events: 5\n")
    settings = load_settings(file, environ={"ORDER_SYNC_KAFKA__GROUP_ID": "from-env"})
    assert (settings.kafka.group_id, settings.kafka.input_topic, settings.max_inflight_events) == (
        "from-env",
        "in-file",
        5,
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ORDER_SYNC_NO_SUCH_THING": "1"}, "unknown setting ORDER_SYNC_NO_SUCH_THING"),
        ({"ORDER_SYNC_MAX_INFLIGHT_EVENTS": "0"}, "(ORDER_SYNC_MAX_INFLIGHT_EVENTS)"),
        ({"ORDER_SYNC_PIPELINES": "nowhere"}, "unknown pipeline 'nowhere'"),
    ],
)
def test_invalid_settings_are_one_line_naming_the_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ=environ)
    text = str(raised.value)
    assert text.startswith("invalid configuration: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("content", ["- a list\n", "kafka: [unclosed\n"])
def test_an_unreadable_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(content)
    with pytest.raises(ConfigError, match=str(file).replace("\\", "\\\\") + "|must hold a mapping"):
        load_settings(file, environ={})
