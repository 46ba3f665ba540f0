"""What the connector exposes on /metrics, and the Prometheus tools the monitoring tests run.

The series list comes from `connector.observability.metrics.Metrics()` itself, so renaming a metric or a label
without updating the dashboard, the alerts or their tests fails in tests/deploy.
"""

from __future__ import annotations

import shutil

import pytest
from prometheus_client.metrics import MetricWrapperBase

from connector.observability.metrics import Metrics

#: Labels Prometheus (and a ServiceMonitor) attach to every scraped series.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "service", "endpoint"})
#: Series Prometheus itself records for every scrape target.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
INSTALL_HINT = (
    "Debian's prometheus package provides it: apt-get install -y --no-install-recommends prometheus "
    "(.ci/run installs it)"
)


def exposed_series() -> dict[str, frozenset[str]]:
    """Every series name `connector.observability.metrics.Metrics` exposes, with its label names.

    Names come from the registry (counters get `_total`, histograms `_bucket`, `_sum`, `_count`,
    as prometheus-client exposes them); label names from the metric objects themselves, since a
    labelled metric with no children yet has no samples to read them from.
    """
    metrics = Metrics()
    labels_by_family = {
        collector._name: frozenset(collector._labelnames)
        for collector in vars(metrics).values()
        if isinstance(collector, MetricWrapperBase)
    }
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    series: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        labels = labels_by_family.get(family.name, frozenset())
        for suffix in suffixes.get(family.type, ("",)):
            series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def tool(name: str) -> str:
    """The path of a Prometheus binary, or a skip saying how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: {INSTALL_HINT}")
    return path
