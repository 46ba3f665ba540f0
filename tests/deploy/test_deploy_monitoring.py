"""The Grafana dashboard's structure: valid dashboard JSON that Grafana provisions as shipped.

Whether its queries are right is checked by Prometheus itself, not here: test_deploy_prometheus
evaluates every panel's query against a real Prometheus scraping a live connector.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.deploy_support import dashboard_panels, dashboard_queries, load_dashboard

#: The metrics the README's "Monitoring" section says the dashboard shows.
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
    "order_sync_partitions_paused",
    "order_sync_ready",
}
#: Shown per pipeline (the intake and each platform's consumer group), filtered by $pipeline.
PER_PIPELINE = ("order_sync_consumer_lag", "order_sync_inflight_events", "order_sync_partitions_paused")
PANEL_TYPES = {"row", "stat", "timeseries", "state-timeline", "gauge", "bargauge", "table", "text"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_dashboard_is_grafana_dashboard_json(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["id"] is None, "provisioned dashboards carry no database id"
    panels = dashboard_panels(dashboard)
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
            assert target["datasource"] == panel["datasource"] == DATASOURCE


def test_dashboard_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    occupied: dict[tuple[int, int], int] = {}
    for panel in dashboard_panels(dashboard):
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
            assert variable["datasource"] == DATASOURCE
            assert variable["query"]["query"] == variable["definition"]


def test_dashboard_shows_every_metric_it_promises(dashboard: dict[str, Any]) -> None:
    exprs = [query.expr for query in dashboard_queries(dashboard)]
    missing = {m for m in DASHBOARD_MUST_SHOW if not any(re.search(rf"\b{m}\b", e) for e in exprs)}
    assert not missing, f"not shown: {sorted(missing)}"


def test_lag_and_inflight_work_are_shown_per_pipeline(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["pipeline"]["definition"].endswith(", pipeline)")
    for metric in PER_PIPELINE:
        queries = [q for q in dashboard_queries(dashboard) if re.search(rf"\b{metric}\b", q.expr)]
        per_pipeline = [
            q for q in queries if "{{pipeline}}" in q.legend and 'pipeline=~"$pipeline"' in q.expr
        ]
        assert per_pipeline, f"no panel shows {metric} per pipeline"


def test_pauses_in_force_are_shown_with_their_age(dashboard: dict[str, Any]) -> None:
    """Operators' pauses (README "Operator controls"): the targets paused now, a whole platform's
    (connection `_all`) whatever the connection variable, each with the age of its pause."""
    (panel,) = [p for p in dashboard_panels(dashboard) if p["title"] == "Paused"]
    exprs = {t["refId"]: t["expr"] for t in panel["targets"]}
    assert re.search(r"max by \(platform, connection\) \(order_sync_paused\{[^}]*\}\) == 1$", exprs["A"])
    assert re.search(
        r"time\(\) - max by \(platform, connection\) \(order_sync_paused_since_seconds\b", exprs["B"]
    )
    # The age only of what is paused now: a resumed pause's gauges stay, at 0.
    assert exprs["B"].endswith(f"and on (platform, connection) ({exprs['A']})")
    for expr in exprs.values():
        assert 'connection=~"$connection|_all"' in expr and 'platform=~"$platform"' in expr
