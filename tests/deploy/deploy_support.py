"""Paths, values and small helpers shared by the deployment tests (imported by conftest and tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "order-sync"
PRODUCTION_VALUES = CHART_DIR / "ci" / "production-values.yaml"
RELEASE = "order-sync"
NAMESPACE = "orders"

Manifest = dict[str, Any]
Render = Callable[[dict[str, Any]], list[Manifest]]

#: Values that switch on every optional object the chart can render (CRDs included), with
#: credentials inline so the chart's own Secret is rendered too.
FULL_VALUES: dict[str, Any] = {
    "kafka": {
        "bootstrapServers": "kafka-0:9094,kafka-1:9094",
        "securityProtocol": "SASL_SSL",
        "sasl": {"mechanism": "SCRAM-SHA-256", "username": "order-sync", "password": "kafka-s3cret"},
        "tls": {"caSecret": {"name": "kafka-ca", "key": "ca.pem"}},
    },
    "idempotency": {"url": "redis://:redis-s3cret@redis:6379/0"},
    "platforms": {
        "vucustom": {"enabled": True, "apiKey": "vu-key", "apiSecret": "vu-s3cret"},
        "sellercloud": {
            "enabled": True,
            "serverId": "acme",
            "username": "sc-user",
            "password": "sc-s3cret",
            "settings": {"maxConcurrency": 4, "authRefreshOn": [401, 403], "timeoutS": 2.5},
        },
        "elasticpath": {"enabled": True, "clientId": "ep-client", "clientSecret": "ep-s3cret"},
        "ventmere": {
            "enabled": True,
            "baseUrl": "https://ventmere.example.com",
            "apiToken": "vm-token",
            "organizationId": "org-1",
        },
    },
    "connector": {"extraSettings": {"KAFKA__MAX_POLL_RECORDS": "200"}},
    "keda": {"enabled": True, "maxReplicaCount": 12},
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "dashboards": {"enabled": True},
}

#: FULL_VALUES in split mode: one Deployment per pipeline, Sellercloud with overrides of its own.
SPLIT_VALUES: dict[str, Any] = {
    **FULL_VALUES,
    "pipelines": {
        "split": True,
        "overrides": {
            "sellercloud": {
                "resources": {"limits": {"memory": "1Gi"}},
                "keda": {"maxReplicaCount": 2},
                "podDisruptionBudget": {"maxUnavailable": 0},
                "extraEnv": [{"name": "ORDER_SYNC_MAX_INFLIGHT_EVENTS", "value": "100"}],
            },
            # An override for a platform that is not enabled renders nothing.
            "ventmere": {"replicaCount": 5},
        },
    },
    "platforms": {**FULL_VALUES["platforms"], "ventmere": {"enabled": False}},
    "extraEnv": [{"name": "TZ", "value": "UTC"}],
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    ],
}
#: The pipelines SPLIT_VALUES runs, each in its own Deployment.
SPLIT_PIPELINES = ("intake", "elasticpath", "sellercloud", "vucustom")

#: Secret values that must never appear outside a Secret.
FULL_VALUES_SECRETS = (
    "kafka-s3cret",
    "redis-s3cret",
    "vu-key",
    "vu-s3cret",
    "sc-s3cret",
    "ep-s3cret",
    "vm-token",
)


def only(manifests: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The one manifest of `kind` (whose name ends with `name_suffix`)."""
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind}*{name_suffix}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


DASHBOARD = CHART_DIR / "dashboards" / "order-sync.json"


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    legend: str

    def __str__(self) -> str:
        return f"{self.panel} [{self.ref_id}]"


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return panels


def dashboard_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(panel["title"], target["refId"], target["expr"], target.get("legendFormat", ""))
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]
