"""The chart's static group membership (README "Restarts and group membership"): each pod's groups
joined under the pod's own name, from the downward API."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from connector.config import load_settings
from connector.kafka.client import consumer_options
from tests.deploy.deploy_support import FULL_VALUES, SPLIT_PIPELINES, SPLIT_VALUES

KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
POD_NAME = {"fieldRef": {"fieldPath": "metadata.name"}}


def _instance_ids(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """Per Deployment, how its pods get ORDER_SYNC_KAFKA__GROUP_INSTANCE_ID (None: not at all)."""
    ids = {}
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {variable["name"]: variable for variable in container.get("env", [])}
        variable = env.get("ORDER_SYNC_KAFKA__GROUP_INSTANCE_ID")
        ids[deployment["metadata"]["name"]] = variable and variable.get("valueFrom")
    return ids


def test_static_membership_names_each_pod_s_groups_after_the_pod(render: Any) -> None:
    assert set(_instance_ids(render({})).values()) == {None}
    for values in (FULL_VALUES, SPLIT_VALUES):
        manifests = render({**values, "kafka": {**values.get("kafka", {}), "staticMembership": True}})
        ids = _instance_ids(manifests)
        assert len(ids) == (len(SPLIT_PIPELINES) if values is SPLIT_VALUES else 1)
        assert all(source == POD_NAME for source in ids.values()), ids
        for deployment in (m for m in manifests if m["kind"] == "Deployment"):
            for kube_version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(deployment, kube_version, strict=True)


def test_a_pod_name_is_a_group_instance_id() -> None:
    settings = load_settings(environ={"ORDER_SYNC_KAFKA__GROUP_INSTANCE_ID": "order-sync-6f7c9d8b54-x2x7q"})
    options = consumer_options(settings.kafka, "elasticpath")
    assert options["group_instance_id"] == "order-sync-6f7c9d8b54-x2x7q.elasticpath"
    assert "group_instance_id" not in consumer_options(load_settings(environ={}).kafka, "elasticpath")
