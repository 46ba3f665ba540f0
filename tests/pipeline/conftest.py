"""Fixtures for pipeline tests: a recording HTTP endpoint standing in for two platforms."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tests.support.kafka import Topics
from tests.support.servers import Received, RecordingServer

#: The platforms `pipeline_env` enables: wait for their groups' commits (and the intake's).
PLATFORMS = ("vucustom", "ventmere")


def pipeline_env(
    topics: Topics, group: str, server: RecordingServer, bootstrap: str, store_path: Path
) -> dict[str, str]:
    """Fresh topics and group on the test broker; VU Custom and Ventmere pointed at the recording
    endpoint, the other platforms disabled; a SQLite store."""
    return {
        **topics.env(group),
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "ORDER_SYNC_PLATFORMS__VUCUSTOM__BASE_URL": server.url("/vu"),
        "ORDER_SYNC_PLATFORMS__VUCUSTOM__API_KEY": "key",
        "ORDER_SYNC_PLATFORMS__VUCUSTOM__API_SECRET": "secret-value",
        "ORDER_SYNC_PLATFORMS__VENTMERE__BASE_URL": server.url("/vm"),
        "ORDER_SYNC_PLATFORMS__VENTMERE__API_TOKEN": "token-value",
        "ORDER_SYNC_PLATFORMS__VENTMERE__ORGANIZATION_ID": "org-1",
        "ORDER_SYNC_PLATFORMS__SELLERCLOUD__ENABLED": "false",
        "ORDER_SYNC_PLATFORMS__ELASTICPATH__ENABLED": "false",
        "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{store_path}",
    }


def versions_by_order(requests: list[Received]) -> dict[tuple[str, str], list[int]]:
    """(platform, order) -> versions in the order the endpoint received them (from the `v{n}` note)."""
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    for request in requests:
        if request.path.startswith("/vu/"):
            order = request.query.get("order_number") or request.query["id"]
            note = request.body["order"]["note"]
            seen[("vucustom", order)].append(int(note[1:]))
        elif request.path.startswith("/vm/"):
            order = request.path.rsplit("/", 1)[1]
            seen[("ventmere", order)].append(int(request.body["customerNote"][1:]))
    return dict(seen)
