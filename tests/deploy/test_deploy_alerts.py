"""The alert rules the chart renders, checked and unit-tested by Prometheus's own promtool.

`promtool check rules` parses every expression as Prometheus will; `promtool test rules` runs
alerts.promtool.yaml (input series per alert, evaluated over simulated time) against the rendered
rules: each alert fires, with its labels and annotations, on the series that should fire it, and
stays silent on a healthy connector and before its `for` has passed. The input series are held to
the names and labels the connector exposes, so the unit tests cannot drift from the real metrics.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_metrics import (
    SCRAPE_SERIES,
    TARGET_LABELS,
    exposed_series,
    tool,
)

ALERT_TESTS = Path(__file__).with_name("alerts.promtool.yaml")
_SERIES = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)\{(?P<labels>.*)\}$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="[^"]*"\s*(?:,|$)')


@pytest.fixture(scope="module")
def alert_rules(full_manifests: list[dict[str, Any]], find: Any) -> list[dict[str, Any]]:
    (group,) = find(full_manifests, "PrometheusRule")["spec"]["groups"]
    rules: list[dict[str, Any]] = group["rules"]
    return rules


@pytest.fixture(scope="module")
def rule_tests() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def rules_dir(
    full_manifests: list[dict[str, Any]], find: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The rendered PrometheusRule's groups as a Prometheus rules file, next to the unit tests."""
    directory = tmp_path_factory.mktemp("rules")
    groups = find(full_manifests, "PrometheusRule")["spec"]["groups"]
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    shutil.copy(ALERT_TESTS, directory / ALERT_TESTS.name)
    return directory


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{output}"
    return output


@pytest.mark.slow
def test_promtool_accepts_the_rendered_rules(rules_dir: Path, alert_rules: list[dict[str, Any]]) -> None:
    output = _run([tool("promtool"), "check", "rules", "rules.yaml"], rules_dir)
    assert f"SUCCESS: {len(alert_rules)} rules found" in output


@pytest.mark.slow
def test_every_alert_fires_on_trouble_and_stays_silent_when_healthy(rules_dir: Path) -> None:
    output = _run([tool("promtool"), "test", "rules", ALERT_TESTS.name], rules_dir)
    assert "SUCCESS" in output


def test_rule_tests_cover_every_alert_firing_and_silent(
    alert_rules: list[dict[str, Any]], rule_tests: dict[str, Any]
) -> None:
    alerts = {rule["alert"] for rule in alert_rules}
    firing: set[str] = set()
    for group in rule_tests["tests"]:
        cases = group["alert_rule_test"]
        firing |= {case["alertname"] for case in cases if case["exp_alerts"]}
        asked = {case["alertname"] for case in cases}
        assert asked <= alerts, f"{group['name']}: no such alert {sorted(asked - alerts)}"
        # Every group has a silent case for every alert: trouble meant for one fires no other.
        silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
        assert silent == alerts, f"{group['name']}: no silent case for {sorted(alerts - silent)}"
    assert firing == alerts, f"no firing case for {sorted(alerts - firing)}"


def test_rule_tests_feed_the_series_the_connector_exposes(rule_tests: dict[str, Any]) -> None:
    exposed = exposed_series()
    for group in rule_tests["tests"]:
        for input_series in group["input_series"]:
            match = _SERIES.match(input_series["series"])
            assert match, input_series["series"]
            name, labels = match["name"], set(_LABEL.findall(match["labels"]))
            assert {"job", "namespace"} <= labels, f"{name}: the alerts select on job and namespace"
            if name in SCRAPE_SERIES:
                continue
            assert name in exposed, f"{name} is not a series the connector exposes"
            assert labels - TARGET_LABELS == exposed[name], f"{name}: labels {sorted(labels - TARGET_LABELS)}"
