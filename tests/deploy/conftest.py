"""Fixtures for the deployment artefacts: the Helm chart, the Dockerfile, docker-compose, dashboard, alerts.

The chart is rendered by real Helm: `helm-python-sdk` binds Helm's own Go SDK (v4) as a shared
library and exposes `Chart.render`, the engine behind `helm template`, including the
values.schema.json check an install performs. No cluster is involved: `lookup` returns nothing and
the Kubernetes version is Helm's built-in default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import (
    CHART_DIR,
    FULL_VALUES,
    NAMESPACE,
    PRODUCTION_VALUES,
    RELEASE,
    SPLIT_VALUES,
    Manifest,
    Render,
    only,
)


@pytest.fixture(scope="session")
def helm() -> Any:
    return pytest.importorskip(
        "helm_python",
        reason="helm-python-sdk (Helm's Go SDK as a library) is not installed: pip install -e '.[test]'",
    )


@pytest.fixture(scope="session")
def chart(helm: Any) -> Iterator[Any]:
    with helm.Chart.load(os.fspath(CHART_DIR)) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Render:
    """Render the chart like `helm template order-sync helm/order-sync -n orders -f values`."""

    def _render(values: dict[str, Any]) -> list[Manifest]:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        manifests: list[Manifest] = []
        for path, text in sorted(rendered.items()):
            if not path.endswith((".yaml", ".yml")):
                continue  # NOTES.txt
            manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
        return manifests

    return _render


@pytest.fixture(scope="session")
def production_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(PRODUCTION_VALUES.read_text(encoding="utf-8"))
    return values


@pytest.fixture(scope="session")
def default_manifests(render: Render) -> list[Manifest]:
    return render({})


@pytest.fixture(scope="session")
def production_manifests(render: Render, production_values: dict[str, Any]) -> list[Manifest]:
    return render(production_values)


@pytest.fixture(scope="session")
def full_manifests(render: Render) -> list[Manifest]:
    return render(FULL_VALUES)


@pytest.fixture(scope="session")
def split_manifests(render: Render) -> list[Manifest]:
    return render(SPLIT_VALUES)


@pytest.fixture(scope="session")
def find() -> Callable[..., Manifest]:
    return only
