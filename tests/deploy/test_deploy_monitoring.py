"""The Grafana dashboard and the alert rules query only metrics (and labels) the connector exposes.

The series list comes from `connector.metrics.Metrics()` itself, so renaming a metric without
updating the dashboard or the alerts fails here. PromQL is read with a small tokenizer
(deploy_promql), not Prometheus's parser: syntax beyond balanced brackets is not checked.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.deploy_promql import SCRAPE_SERIES, TARGET_LABELS, Query, exposed_series, read
from tests.deploy.deploy_support import CHART_DIR, FULL_VALUES

DASHBOARD = CHART_DIR / "dashboards" / "order-sync.json"
#: The metrics CONTRACT §6 and the issue ask the dashboard to show.
DASHBOARD_MUST_SHOW = {
    "order_sync_events_total",
    "order_sync_deliveries_total",
    "order_sync_platform_request_seconds_bucket",
    "order_sync_event_seconds_bucket",
    "order_sync_retries_total",
    "order_sync_circuit_open",
    "order_sync_consumer_lag",
    "order_sync_dlq_total",
    "order_sync_inflight_deliveries",
    "order_sync_inflight_events",
    "order_sync_ready",
}
PANEL_TYPES = {"row", "stat", "timeseries", "state-timeline", "gauge", "bargauge", "table", "text"}


@pytest.fixture(scope="module")
def series() -> dict[str, frozenset[str]]:
    return exposed_series()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return panels


def _dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            # label_values(selector, label): the selector is PromQL, the label is checked below.
            selector, _, label = query.removeprefix("label_values(").removesuffix(")").rpartition(",")
            exprs.append(f"sum by ({label.strip()}) ({selector})")
    return exprs


def _assert_known(query: Query, series: dict[str, frozenset[str]], where: str) -> None:
    unknown = query.metrics - set(series) - SCRAPE_SERIES
    assert not unknown, f"{where}: no such metric {sorted(unknown)}; exposed: {sorted(series)}"
    for metric, label in query.matched_labels:
        known = series.get(metric or "", frozenset()) | TARGET_LABELS
        if metric is None:
            known = known.union(*(series.get(m, frozenset()) for m in query.metrics))
        assert label in known, f"{where}: {metric} has no label {label!r}"
    available = TARGET_LABELS.union(*(series.get(m, frozenset()) for m in query.metrics))
    assert query.grouping_labels <= available, (
        f"{where}: grouping by unknown {query.grouping_labels - available}"
    )


# --- dashboard -------------------------------------------------------------------------------------


def test_dashboard_is_grafana_dashboard_json(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["id"] is None, "provisioned dashboards carry no database id"
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], f"panel {panel['id']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert (
                target["datasource"] == panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            )


def test_dashboard_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    occupied: dict[tuple[int, int], int] = {}
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"panels {occupied[(x, y)]} and {panel['id']} overlap"
                occupied[(x, y)] = panel["id"]


def test_dashboard_has_a_prometheus_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_queries_only_exposed_metrics(
    dashboard: dict[str, Any], series: dict[str, frozenset[str]]
) -> None:
    for expr in _dashboard_queries(dashboard):
        _assert_known(read(expr), series, f"dashboard query {expr!r}")


def test_dashboard_shows_every_metric_of_the_contract(dashboard: dict[str, Any]) -> None:
    shown = set().union(*(read(expr).metrics for expr in _dashboard_queries(dashboard)))
    assert shown >= DASHBOARD_MUST_SHOW, f"not shown: {sorted(DASHBOARD_MUST_SHOW - shown)}"


def test_latency_panels_use_histogram_quantile(dashboard: dict[str, Any]) -> None:
    exprs = _dashboard_queries(dashboard)
    for histogram in ("order_sync_platform_request_seconds_bucket", "order_sync_event_seconds_bucket"):
        quantiles = [e for e in exprs if histogram in e and e.startswith("histogram_quantile(")]
        assert quantiles and all("le" in read(e).grouping_labels for e in quantiles)


# --- alerts ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alert_rules(render: Any, find: Any) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = find(render(FULL_VALUES), "PrometheusRule")["spec"]["groups"][0]["rules"]
    return rules


def test_alerts_query_only_exposed_metrics(
    alert_rules: list[dict[str, Any]], series: dict[str, frozenset[str]]
) -> None:
    for rule in alert_rules:
        query = read(rule["expr"])
        assert query.metrics, f"{rule['alert']}: no metric in {rule['expr']!r}"
        _assert_known(query, series, rule["alert"])


def test_alerts_cover_the_failure_modes(alert_rules: list[dict[str, Any]]) -> None:
    metrics_by_alert = {r["alert"]: read(r["expr"]).metrics for r in alert_rules}
    assert metrics_by_alert["OrderSyncDeliveryFailureRatioHigh"] == {"order_sync_deliveries_total"}
    assert metrics_by_alert["OrderSyncDeadLetterQueueGrowing"] == {"order_sync_dlq_total"}
    assert metrics_by_alert["OrderSyncConsumerLagGrowing"] == {"order_sync_consumer_lag"}
    assert metrics_by_alert["OrderSyncCircuitOpen"] == {"order_sync_circuit_open"}
    assert metrics_by_alert["OrderSyncNotReady"] == {"order_sync_ready"}
    assert metrics_by_alert["OrderSyncTargetDown"] == {"up"}


def test_failure_ratio_alert_is_per_platform(alert_rules: list[dict[str, Any]]) -> None:
    (rule,) = [r for r in alert_rules if r["alert"] == "OrderSyncDeliveryFailureRatioHigh"]
    query = read(rule["expr"])
    assert query.grouping_labels == {"platform"}
    assert ("order_sync_deliveries_total", "outcome") in query.matched_labels


def test_metric_reader_sees_through_functions_and_matchers() -> None:
    query = read(
        'histogram_quantile(0.99, sum by (le, platform) (rate(foo_bucket{platform=~"a|b", job="x"}[5m])))'
        " / on (platform) group_left count(bar) > 1e+06 or vector(0)"
    )
    assert query.metrics == {"foo_bucket", "bar"}
    assert query.matched_labels == {("foo_bucket", "platform"), ("foo_bucket", "job")}
    assert query.grouping_labels == {"le", "platform"}
    with pytest.raises(AssertionError, match="unclosed"):
        read("sum(rate(foo[5m])")


def test_misspelt_metric_or_label_is_caught(series: dict[str, frozenset[str]]) -> None:
    with pytest.raises(AssertionError, match="no such metric"):
        _assert_known(read("sum(rate(order_sync_delivery_total[5m]))"), series, "typo")
    with pytest.raises(AssertionError, match="no label"):
        _assert_known(read('order_sync_deliveries_total{status="applied"}'), series, "typo")
    with pytest.raises(AssertionError, match="grouping by unknown"):
        _assert_known(read("sum by (topic) (order_sync_consumer_lag)"), series, "typo")
