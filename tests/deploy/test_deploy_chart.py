"""The Helm chart, rendered by real Helm (helm-python-sdk: Helm v4's Go SDK) and checked offline.

What is checked: `helm lint`; rendering with the default values, the production-like values file,
a values set that enables every optional object and the same in split mode (one Deployment per
pipeline); every rendered built-in object validated
against the Kubernetes OpenAPI schemas of the oldest and newest versions kubernetes-validate ships
(strict: unknown fields fail); values.schema.json enforced by Helm itself at render time; the
render-time guards; and that the environment the pods receive is accepted by the connector's own
settings loader.

Not checked here (no cluster, no schemas shipped for them): the custom resources ServiceMonitor,
PrometheusRule (monitoring.coreos.com/v1), ScaledObject and TriggerAuthentication (keda.sh/v1alpha1)
are not validated against their CRDs' OpenAPI schemas; their metadata is validated as ObjectMeta
and their specs are checked structurally below. Server-side admission (quotas, PodSecurity
admission, webhooks) needs a cluster.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

import kubernetes_validate
import pytest

from connector.config import load_settings
from connector.models import Platform
from tests.deploy.deploy_support import (
    CHART_DIR,
    FULL_VALUES,
    FULL_VALUES_SECRETS,
    NAMESPACE,
    RELEASE,
    SPLIT_PIPELINES,
    SPLIT_VALUES,
)

KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")  # kubeVersion >=1.25 in Chart.yaml; the newest shipped
CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com/", "keda.sh/")
DATA_DIR = "/var/lib/order-sync"
SET_NAMES = ("default", "production", "full", "split")
SECRET_ENV = re.compile(
    r"PASSWORD|SECRET|TOKEN|API_KEY|IDEMPOTENCY__URL|SASL_USERNAME|__USERNAME|CLIENT_ID|ORGANIZATION_ID"
)


@pytest.fixture(scope="module")
def rendered_sets(
    default_manifests: Any, production_manifests: Any, full_manifests: Any, split_manifests: Any
) -> dict[str, Any]:
    return {
        "default": default_manifests,
        "production": production_manifests,
        "full": full_manifests,
        "split": split_manifests,
    }


def _pod_env(
    manifests: list[dict[str, Any]],
    existing_secret: dict[str, str] | None = None,
    deployment: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The environment a pod of `deployment` (default: the only one) gets from envFrom and env."""
    env: dict[str, str] = {}
    config_maps = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ConfigMap"}
    secrets = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Secret"}
    container = _container(deployment or _deployment(manifests))
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]]["data"])
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            if name in secrets:
                secret = secrets[name]
                env.update(secret.get("stringData", {}))
                env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
            else:
                assert existing_secret is not None, f"pod reads Secret {name} the chart does not render"
                env.update(existing_secret)
    for variable in container.get("env", []):
        env[variable["name"]] = variable["value"]
    return env


def _deployments(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == "Deployment"]


def _deployment(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = _deployments(manifests)
    return deployment


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _by_name(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


# --- lint and Kubernetes schemas -------------------------------------------------------------------


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_helm_lint_reports_no_warning(helm: Any, production_values: dict[str, Any], set_name: str) -> None:
    values = {"default": None, "production": production_values, "full": FULL_VALUES, "split": SPLIT_VALUES}
    report = helm.lint(
        str(CHART_DIR), values[set_name], strict=True, namespace=NAMESPACE, kube_version="v1.30.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == []


@pytest.mark.parametrize("set_name", SET_NAMES)
@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_rendered_objects_validate_against_kubernetes_schemas(
    rendered_sets: dict[str, Any], set_name: str, kube_version: str
) -> None:
    manifests = rendered_sets[set_name]
    assert manifests
    for manifest in manifests:
        if manifest["apiVersion"].startswith(CUSTOM_RESOURCE_GROUPS):
            # No CRD schema available offline: validate the part Kubernetes itself owns.
            stub = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest["metadata"]}
            kubernetes_validate.validate(stub, kube_version, strict=True)
            continue
        kubernetes_validate.validate(manifest, kube_version, strict=True)


def test_default_install_renders_the_core_objects(default_manifests: list[dict[str, Any]]) -> None:
    kinds = sorted(m["kind"] for m in default_manifests)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    deployment = _deployment(default_manifests)
    assert deployment["spec"]["replicas"] == 1
    assert all(m["metadata"]["name"] == RELEASE for m in default_manifests)
    # A Deployment's selector is immutable: the default one keeps the selector of earlier releases.
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "order-sync",
        "app.kubernetes.io/instance": RELEASE,
    }
    # It runs every pipeline: the connector's default when ORDER_SYNC_PIPELINES is unset.
    assert "ORDER_SYNC_PIPELINES" not in _pod_env(default_manifests)


def test_production_values_render_monitoring_and_keda_without_a_chart_secret(
    production_manifests: list[dict[str, Any]],
) -> None:
    kinds = sorted(m["kind"] for m in production_manifests)
    per_pipeline = ["Deployment", "PodDisruptionBudget", "ScaledObject"]
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "TriggerAuthentication",
        ]
        + per_pipeline * 5
    )
    # The example splits the pipelines: Sellercloud, throttled by its hourly quota, runs on its own.
    assert set(_by_name(production_manifests, "Deployment")) == {
        f"{RELEASE}-{p}" for p in ("intake", "vucustom", "sellercloud", "elasticpath", "ventmere")
    }
    for deployment in _deployments(production_manifests):
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
        secret_refs = [s["secretRef"]["name"] for s in _container(deployment)["envFrom"] if "secretRef" in s]
        assert secret_refs == ["order-sync-credentials"]
    sellercloud = _by_name(production_manifests, "ScaledObject")[f"{RELEASE}-sellercloud"]
    assert sellercloud["spec"]["maxReplicaCount"] == 2
    (trigger,) = sellercloud["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == "order-sync.sellercloud"


# --- the pod ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_pod_runs_non_root_with_read_only_root_and_no_capabilities(
    rendered_sets: dict[str, Any], set_name: str
) -> None:
    for deployment in _deployments(rendered_sets[set_name]):
        _assert_pod_is_locked_down(deployment)


def _assert_pod_is_locked_down(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_probes_use_healthz_and_readyz_on_the_metrics_port(
    rendered_sets: dict[str, Any], set_name: str
) -> None:
    manifests = rendered_sets[set_name]
    for deployment in _deployments(manifests):
        container = _container(deployment)
        (port,) = container["ports"]
        assert port["name"] == "http"
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        env = _pod_env(manifests, existing_secret={}, deployment=deployment)
        assert int(env["ORDER_SYNC_HTTP__PORT"]) == port["containerPort"]


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_termination_grace_outlasts_the_connector_shutdown_timeout(
    rendered_sets: dict[str, Any], set_name: str
) -> None:
    manifests = rendered_sets[set_name]
    for deployment in _deployments(manifests):
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        env = _pod_env(manifests, existing_secret={}, deployment=deployment)
        assert grace >= float(env["ORDER_SYNC_SHUTDOWN_TIMEOUT_S"]) + 10


def test_sqlite_store_lives_on_a_writable_volume(default_manifests: list[dict[str, Any]]) -> None:
    env = _pod_env(default_manifests)
    url = env["ORDER_SYNC_IDEMPOTENCY__URL"]
    assert url.startswith("sqlite:///")
    path = url.removeprefix("sqlite:///")
    container = _container(_deployment(default_manifests))
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["mountPath"] == DATA_DIR and not mount.get("readOnly", False)
    volumes = {v["name"]: v for v in _deployment(default_manifests)["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]


def test_config_change_rolls_the_pods(render: Any) -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        annotations = _deployment(render(values))["spec"]["template"]["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    base = checksums({})
    assert set(base) == {"checksum/config", "checksum/secret"}
    changed_config = checksums({"kafka": {"groupId": "other"}})
    changed_secret = checksums({"idempotency": {"url": "redis://redis:6379/1"}})
    assert changed_config["checksum/config"] != base["checksum/config"]
    assert changed_config["checksum/secret"] == base["checksum/secret"]
    assert changed_secret["checksum/secret"] != base["checksum/secret"]


@pytest.mark.parametrize("set_name", ["full", "split"])
def test_selectors_match_the_pod_labels(rendered_sets: dict[str, Any], find: Any, set_name: str) -> None:
    manifests = rendered_sets[set_name]
    service = find(manifests, "Service")
    monitor = find(manifests, "ServiceMonitor")
    pdbs = _by_name(manifests, "PodDisruptionBudget")
    pods = {
        name: d["spec"]["template"]["metadata"]["labels"]
        for name, d in _by_name(manifests, "Deployment").items()
    }
    assert set(pdbs) == set(pods)
    for name, deployment in _by_name(manifests, "Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        # Each Deployment and its PDB select their own pods and no other Deployment's.
        assert [other for other, labels in pods.items() if selector.items() <= labels.items()] == [name]
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == selector
        # One Service (one scrape job) covers the pods of every Deployment.
        assert service["spec"]["selector"].items() <= pods[name].items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


# --- the connector's configuration -----------------------------------------------------------------


def test_default_environment_is_accepted_by_the_connector(default_manifests: list[dict[str, Any]]) -> None:
    settings = load_settings(environ=_pod_env(default_manifests))
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.platforms.enabled() == []


def test_full_environment_is_accepted_by_the_connector(full_manifests: list[dict[str, Any]]) -> None:
    settings = load_settings(environ=_pod_env(full_manifests))
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_mechanism == "SCRAM-SHA-256"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "kafka-s3cret"
    assert str(settings.kafka.ssl_cafile) == "/etc/order-sync/kafka-ca/ca.pem"
    assert settings.kafka.max_poll_records == 200
    assert settings.idempotency.url.get_secret_value() == "redis://:redis-s3cret@redis:6379/0"
    assert set(settings.platforms.enabled()) == set(Platform)
    sellercloud = settings.platforms.sellercloud
    assert sellercloud.resolved_base_url() == "https://acme.api.sellercloud.com/rest"
    assert (sellercloud.max_concurrency, sellercloud.auth_refresh_on, sellercloud.timeout_s) == (
        4,
        [401, 403],
        2.5,
    )
    assert settings.platforms.ventmere.organization_id == "org-1"


def test_production_environment_is_accepted_by_the_connector(
    production_manifests: list[dict[str, Any]],
) -> None:
    # The keys production-values.yaml documents for its existingSecret.
    existing_secret = {
        "ORDER_SYNC_IDEMPOTENCY__URL": "postgresql://order_sync:pw@db:5432/order_sync",
        "ORDER_SYNC_KAFKA__SASL_USERNAME": "order-sync",
        "ORDER_SYNC_KAFKA__SASL_PASSWORD": "pw",
        "ORDER_SYNC_PLATFORMS__VUCUSTOM__API_KEY": "k",
        "ORDER_SYNC_PLATFORMS__VUCUSTOM__API_SECRET": "s",
        "ORDER_SYNC_PLATFORMS__SELLERCLOUD__USERNAME": "u",
        "ORDER_SYNC_PLATFORMS__SELLERCLOUD__PASSWORD": "p",
        "ORDER_SYNC_PLATFORMS__ELASTICPATH__CLIENT_ID": "c",
        "ORDER_SYNC_PLATFORMS__ELASTICPATH__CLIENT_SECRET": "s",
        "ORDER_SYNC_PLATFORMS__VENTMERE__API_TOKEN": "t",
        "ORDER_SYNC_PLATFORMS__VENTMERE__ORGANIZATION_ID": "o",
    }
    for deployment in _deployments(production_manifests):
        settings = load_settings(environ=_pod_env(production_manifests, existing_secret, deployment))
        assert set(settings.platforms.enabled()) == set(Platform)
        assert settings.platforms.elasticpath.auth_refresh_on == [401, 403]
        assert settings.shutdown_timeout_s == 45
        expected_inflight = 500 if deployment["metadata"]["name"].endswith("-sellercloud") else 2000
        assert settings.max_inflight_events == expected_inflight


def test_secrets_stay_out_of_the_config_map(full_manifests: list[dict[str, Any]], find: Any) -> None:
    config_map = find(full_manifests, "ConfigMap", RELEASE)
    secret = find(full_manifests, "Secret")
    assert not [key for key in config_map["data"] if SECRET_ENV.search(key)]
    assert all(SECRET_ENV.search(key) for key in secret["stringData"])
    exposed = json.dumps([m for m in full_manifests if m["kind"] != "Secret"])
    assert not [value for value in FULL_VALUES_SECRETS if value in exposed]


# --- values.schema.json and render-time guards -----------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "three"}, "/replicaCount"),
        ({"kafka": {"bootstrapServers": ""}}, "/kafka/bootstrapServers"),
        ({"kafka": {"securityProtocol": "TLS"}}, "/kafka/securityProtocol"),
        ({"platforms": {"vucustom": {"settings": {"maxConcurency": 3}}}}, "maxConcurency"),
        ({"platforms": {"vucustom": {"enabled": "yes"}}}, "/platforms/vucustom/enabled"),
        ({"idempotency": {"url": "mysql://db/orders"}}, "/idempotency/url"),
        ({"replicas": 3}, "replicas"),
        ({"pipelines": {"overrides": {"shopify": {}}}}, "shopify"),
        ({"pipelines": {"overrides": {"sellercloud": {"replicas": 2}}}}, "replicas"),
        ({"pipelines": {"split": "yes"}}, "/pipelines/split"),
        (
            {"prometheusRule": {"alerts": {"pauseOverdue": {"maxAgeSeconds": "1d"}}}},
            "/prometheusRule/alerts/pauseOverdue/maxAgeSeconds",
        ),
        ({"prometheusRule": {"alerts": {"pauseOverdue": {"maxAge": "1d"}}}}, "maxAge"),
    ],
    ids=[
        "replicaCount-string",
        "empty-bootstrap",
        "protocol",
        "setting-typo",
        "enabled-string",
        "store",
        "unknown-key",
        "unknown-pipeline",
        "override-typo",
        "split-string",
        "pause-age-duration",
        "pause-age-key",
    ],
)
def test_schema_rejects_wrong_values_through_helm(
    helm: Any, render: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 3}, "shared idempotency store"),
        ({"keda": {"enabled": True}}, "shared idempotency store"),
        (
            {
                "autoscaling": {"enabled": True},
                "keda": {"enabled": True},
                "idempotency": {"url": "redis://r:6379/0"},
            },
            "enable at most one",
        ),
        (
            {"persistence": {"existingClaim": "data"}, "replicaCount": 2, "existingSecret": "s"},
            "existingClaim",
        ),
        ({"kafka": {"securityProtocol": "SASL_SSL"}}, "kafka.sasl.mechanism"),
        ({"platforms": {"ventmere": {"enabled": True}}}, "platforms.ventmere.baseUrl"),
        ({"platforms": {"sellercloud": {"enabled": True}}}, "platforms.sellercloud.serverId"),
        ({"pipelines": {"split": True}}, "share one idempotency store"),
        (
            {
                "pipelines": {"split": True},
                "existingSecret": "s",
                "persistence": {"existingClaim": "data"},
            },
            "existingClaim",
        ),
        (
            {
                "pipelines": {"split": True, "overrides": {"intake": {"autoscaling": {"enabled": True}}}},
                "keda": {"enabled": True},
                "idempotency": {"url": "redis://r:6379/0"},
            },
            "order-sync-intake: enable at most one",
        ),
    ],
    ids=[
        "sqlite-replicas",
        "sqlite-keda",
        "hpa-and-keda",
        "claim-replicas",
        "sasl-mechanism",
        "ventmere-url",
        "sc-server",
        "split-sqlite",
        "split-claim",
        "split-hpa-and-keda",
    ],
)
def test_render_refuses_unsafe_combinations(
    helm: Any, render: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


def test_shared_store_allows_several_replicas(render: Any) -> None:
    manifests = render({"replicaCount": 3, "idempotency": {"url": "postgresql://db/orders"}})
    assert _deployment(manifests)["spec"]["replicas"] == 3


def test_hpa_scales_the_deployment(render: Any, find: Any) -> None:
    manifests = render(
        {"autoscaling": {"enabled": True, "maxReplicas": 4}, "idempotency": {"url": "redis://r/0"}}
    )
    hpa = find(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == _deployment(manifests)["metadata"]["name"]
    assert hpa["spec"]["maxReplicas"] == 4
    assert "replicas" not in _deployment(manifests)["spec"]
    for kube_version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(hpa, kube_version, strict=True)


# --- custom resources (structure only; see the module docstring) -----------------------------------


def test_keda_scales_on_the_consumer_group_lag(full_manifests: list[dict[str, Any]], find: Any) -> None:
    scaled = find(full_manifests, "ScaledObject")
    auth = find(full_manifests, "TriggerAuthentication")
    assert scaled["apiVersion"] == auth["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": RELEASE,
    }
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] == 12
    # The one Deployment runs every pipeline: it scales on the lag of every group it consumes.
    triggers = scaled["spec"]["triggers"]
    assert sorted(t["metadata"]["consumerGroup"] for t in triggers) == [
        "order-sync",
        "order-sync.elasticpath",
        "order-sync.sellercloud",
        "order-sync.ventmere",
        "order-sync.vucustom",
    ]
    for trigger in triggers:
        assert trigger["type"] == "kafka"
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        metadata = trigger["metadata"]
        assert all(isinstance(v, str) for v in metadata.values()), "KEDA trigger metadata values are strings"
        assert metadata["bootstrapServers"] == FULL_VALUES["kafka"]["bootstrapServers"]
        assert metadata["topic"] == "orders.changed"
        assert int(metadata["lagThreshold"]) > 0
        assert (metadata["sasl"], metadata["tls"], metadata["allowIdleConsumers"]) == (
            "scram_sha256",
            "enable",
            "false",
        )
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": (RELEASE, "ORDER_SYNC_KAFKA__SASL_USERNAME"),
        "password": (RELEASE, "ORDER_SYNC_KAFKA__SASL_PASSWORD"),
        "ca": ("kafka-ca", "ca.pem"),
    }
    secret = find(full_manifests, "Secret")
    assert {"ORDER_SYNC_KAFKA__SASL_USERNAME", "ORDER_SYNC_KAFKA__SASL_PASSWORD"} <= set(secret["stringData"])


def test_prometheus_rule_structure(full_manifests: list[dict[str, Any]], find: Any) -> None:
    rule = find(full_manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "OrderSyncDeliveryFailureRatioHigh",
        "OrderSyncDeadLetterQueueGrowing",
        "OrderSyncConsumerLagGrowing",
        "OrderSyncPipelineBackpressured",
        "OrderSyncCircuitOpen",
        "OrderSyncConnectionHeld",
        "OrderSyncPauseOverdue",
        "OrderSyncNotReady",
        "OrderSyncTargetDown",
    }
    for alert in alerts.values():
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert re.fullmatch(r"(\d+[smhdwy])+", alert["for"]), alert["for"]
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert f'namespace="{NAMESPACE}"' in alert["expr"]
    assert alerts["OrderSyncCircuitOpen"]["for"] == "5m"


def test_service_monitor_scrapes_metrics_path(full_manifests: list[dict[str, Any]], find: Any) -> None:
    monitor = find(full_manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_alert_thresholds_follow_values(render: Any, find: Any) -> None:
    values = copy.deepcopy(FULL_VALUES)
    values["prometheusRule"] = {
        "enabled": True,
        "alerts": {
            "deliveryFailureRatio": {"threshold": 0.2},
            "connectionHeld": {"threshold": 50, "for": "30m"},
            "pauseOverdue": {"maxAgeSeconds": 7200, "for": "15m", "severity": "critical"},
            "targetDown": {"enabled": False},
        },
    }
    rules = find(render(values), "PrometheusRule")["spec"]["groups"][0]["rules"]
    alerts = {r["alert"]: r for r in rules}
    assert "OrderSyncTargetDown" not in alerts
    assert alerts["OrderSyncDeliveryFailureRatioHigh"]["expr"].rstrip().endswith("> 0.2")
    held = alerts["OrderSyncConnectionHeld"]
    # The threshold applies to the held deliveries, before the paused targets are left out.
    assert re.search(r"\(order_sync_held_deliveries\{[^}]*\}\) > 50\)$", held["expr"], re.MULTILINE)
    assert held["for"] == "30m"
    assert "more than 30m" in held["annotations"]["summary"]
    overdue = alerts["OrderSyncPauseOverdue"]
    assert re.search(r"\(order_sync_paused_since_seconds\{[^}]*\}\)\) > 7200$", overdue["expr"], re.MULTILINE)
    assert overdue["for"] == "15m" and overdue["labels"]["severity"] == "critical"
    assert "more than 2h" in overdue["annotations"]["summary"]


def test_paused_targets_fire_no_lag_or_held_alert(full_manifests: list[dict[str, Any]], find: Any) -> None:
    """A platform paused as a whole is left out of the lag alert; a paused connection, or any of a
    platform paused as a whole, out of the held-connection alert (alerts.promtool.yaml runs them)."""
    (group,) = find(full_manifests, "PrometheusRule")["spec"]["groups"]
    alerts = {r["alert"]: r["expr"] for r in group["rules"]}
    whole_platform = f'order_sync_paused{{job="{RELEASE}", namespace="{NAMESPACE}", connection="_all"}}'
    lag = alerts["OrderSyncConsumerLagGrowing"]
    assert "unless on (pipeline)" in lag and whole_platform in lag
    assert '"pipeline", "$1", "platform", "(.*)"' in lag
    held = alerts["OrderSyncConnectionHeld"]
    assert "unless on (platform, connection)" in held and "unless on (platform)" in held
    assert whole_platform in held
    assert "order_sync_paused{" in alerts["OrderSyncPauseOverdue"]


def _notes(chart: Any, values: dict[str, Any]) -> str:
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    (notes,) = [text for path, text in rendered.items() if path.endswith("NOTES.txt")]
    return " ".join(notes.split())


def test_notes_name_the_control_topics_and_their_acls(chart: Any) -> None:
    """README "Operator controls": the installer learns the topics and who needs which ACL."""
    notes = _notes(chart, {})
    assert '"orders.sync.control" (pauses, read by every replica)' in notes
    assert 'status topic "orders.sync.status"' in notes
    assert (
        "connector's principal needs READ and DESCRIBE on the control topic and WRITE and DESCRIBE" in notes
    )
    assert (
        "operators who may pause need WRITE on the control topic, whoever may look READ on the status"
        in notes
    )
    assert 'README "Operator controls"' in notes
    moved = _notes(
        chart,
        {
            "connector": {"extraSettings": {"KAFKA__CONTROL_TOPIC": "ops.control"}},
            "extraEnv": [{"name": "ORDER_SYNC_KAFKA__STATUS_TOPIC", "value": "ops.status"}],
        },
    )
    assert '"ops.control"' in moved and '"ops.status"' in moved and "orders.sync." not in moved


def test_dashboard_config_map_carries_the_dashboard_file(
    full_manifests: list[dict[str, Any]], find: Any
) -> None:
    config_map = find(full_manifests, "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART_DIR / "dashboards" / "order-sync.json").read_text(encoding="utf-8"))
    assert json.loads(config_map["data"]["order-sync.json"]) == shipped


# --- split mode: one Deployment per pipeline -------------------------------------------------------


def _split_deployment(manifests: list[dict[str, Any]], pipeline: str) -> dict[str, Any]:
    return _by_name(manifests, "Deployment")[f"{RELEASE}-{pipeline}"]


def test_split_renders_one_deployment_per_enabled_pipeline(split_manifests: list[dict[str, Any]]) -> None:
    deployments = _by_name(split_manifests, "Deployment")
    assert sorted(deployments) == sorted(f"{RELEASE}-{p}" for p in SPLIT_PIPELINES)
    for pipeline in SPLIT_PIPELINES:
        deployment = _split_deployment(split_manifests, pipeline)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == pipeline
        env = _pod_env(split_manifests, deployment=deployment)
        assert env["ORDER_SYNC_PIPELINES"] == pipeline
        assert env["TZ"] == "UTC", "the top-level extraEnv reaches every Deployment"
        # One ConfigMap and one Secret for all: the Deployments differ only in what they run.
        assert [
            s.get("configMapRef", s.get("secretRef"))["name"] for s in _container(deployment)["envFrom"]
        ] == [
            RELEASE,
            RELEASE,
        ]


def test_split_overrides_reach_only_their_pipeline(split_manifests: list[dict[str, Any]]) -> None:
    sellercloud = _split_deployment(split_manifests, "sellercloud")
    intake = _split_deployment(split_manifests, "intake")
    # Laid over the top-level resources key by key: the requests stay, the limits are its own.
    assert _container(sellercloud)["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert _container(intake)["resources"]["limits"] == {"memory": "512Mi"}
    assert _pod_env(split_manifests, deployment=sellercloud)["ORDER_SYNC_MAX_INFLIGHT_EVENTS"] == "100"
    assert _pod_env(split_manifests, deployment=intake)["ORDER_SYNC_MAX_INFLIGHT_EVENTS"] == "1000"
    pdbs = _by_name(split_manifests, "PodDisruptionBudget")
    assert pdbs[f"{RELEASE}-sellercloud"]["spec"]["maxUnavailable"] == 0
    assert pdbs[f"{RELEASE}-intake"]["spec"]["maxUnavailable"] == 1


def test_split_keda_scales_each_deployment_on_its_own_group(
    split_manifests: list[dict[str, Any]], find: Any
) -> None:
    scaled = _by_name(split_manifests, "ScaledObject")
    assert sorted(scaled) == sorted(f"{RELEASE}-{p}" for p in SPLIT_PIPELINES)
    auth = find(split_manifests, "TriggerAuthentication")
    for pipeline in SPLIT_PIPELINES:
        name = f"{RELEASE}-{pipeline}"
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        (trigger,) = spec["triggers"]
        group = "order-sync" if pipeline == "intake" else f"order-sync.{pipeline}"
        assert trigger["metadata"]["consumerGroup"] == group
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert spec["maxReplicaCount"] == (2 if pipeline == "sellercloud" else 12)
        assert "replicas" not in _split_deployment(split_manifests, pipeline)["spec"]


def test_split_pipeline_can_leave_keda_for_a_fixed_count_or_cpu(render: Any) -> None:
    values = {
        **SPLIT_VALUES,
        "pipelines": {
            "split": True,
            "overrides": {
                "intake": {"keda": {"enabled": False}, "replicaCount": 2},
                "vucustom": {"keda": {"enabled": False}, "autoscaling": {"enabled": True, "maxReplicas": 3}},
            },
        },
    }
    manifests = render(values)
    assert _split_deployment(manifests, "intake")["spec"]["replicas"] == 2
    assert "replicas" not in _split_deployment(manifests, "vucustom")["spec"]
    (hpa,) = _by_name(manifests, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-vucustom"
    assert hpa["spec"]["maxReplicas"] == 3
    assert sorted(_by_name(manifests, "ScaledObject")) == [f"{RELEASE}-elasticpath", f"{RELEASE}-sellercloud"]
    for kube_version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(hpa, kube_version, strict=True)


def test_split_spreads_each_deployment_over_zones(split_manifests: list[dict[str, Any]]) -> None:
    for deployment in _deployments(split_manifests):
        (constraint,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert constraint["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_split_pods_run_one_pipeline_each(split_manifests: list[dict[str, Any]]) -> None:
    for pipeline in SPLIT_PIPELINES:
        env = _pod_env(split_manifests, deployment=_split_deployment(split_manifests, pipeline))
        settings = load_settings(environ=env)
        assert settings.pipelines == [pipeline]
