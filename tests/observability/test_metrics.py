"""Issue 6: scraped metric values equal what the result topics and the DLQ say."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.support.events import encode, make_event
from tests.support.kafka import TopicReader, Topics, produce
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]
ACCOUNT = "1ac48942-405a-4841-a7d8-708f50dbe1ad"


def all_targets(n: int, ep_order: str | None = None) -> dict[str, dict[str, object]]:
    return {
        "vucustom": {"id": 1000 + n},
        "sellercloud": {"order_id": 500 + n, "company_id": 1},
        "elasticpath": {"order_id": ep_order or str(uuid.UUID(int=n))},
        "ventmere": {"order_id": f"vm-{n}", "account_id": ACCOUNT},
    }


async def test_metric_values_equal_result_and_dlq_counts(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    fulfilled = "fulfilled-order"
    suite.elasticpath.seed_order(fulfilled, shipping="fulfilled")
    messages: list[tuple[bytes, bytes]] = []
    for n in range(20):  # applied on all four, then v1 again under a new event id: stale on all four
        messages.append((f"ord-{n}".encode(), encode(make_event(f"ord-{n}", 2, all_targets(n)))))
    for n in range(5):
        messages.append((f"ord-{n}".encode(), encode(make_event(f"ord-{n}", 1, all_targets(n)))))
    # Elastic Path refuses changes to a fulfilled order: rejected there, applied elsewhere.
    messages.append((b"ord-f", encode(make_event("ord-f", 1, all_targets(99, ep_order=fulfilled)))))
    # A US address without a state cannot go to Sellercloud: unmappable there.
    no_state = make_event("ord-u", 1, all_targets(98))
    no_state["order"]["shipping_address"]["state"] = None
    messages.append((b"ord-u", encode(no_state)))
    messages += [(b"bad", b"{oops"), (b"bad", b'{"event_id": 1}'), (b"bad", b"{oops again")]
    await produce(bootstrap, topics.input, messages)

    connector = connectors(
        {
            **topics.env("metrics"),
            **suite.connector_env(),
            "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{tmp_path / 'store.db'}",
        }
    )
    expected_results = (20 + 5 + 1 + 1) * 4
    async with TopicReader(bootstrap, topics.success, topics.failure, topics.dlq) as reader:
        await reader.wait_for(
            lambda r: (
                len(r.of(topics.success)) + len(r.of(topics.failure)) >= expected_results
                and len(r.of(topics.dlq)) >= 3
            ),
            60,
            "every result and DLQ record",
        )
        await connector.wait_until(
            lambda: _deliveries_total(connector, expected_results), 10, "metrics caught up"
        )
        results = [r.json() for r in reader.of(topics.success) + reader.of(topics.failure)]
        dlq = Counter(r.headers["error.reason"] for r in reader.of(topics.dlq))

    by_outcome = Counter((r["platform"], r["outcome"]) for r in results)
    assert by_outcome[("elasticpath", "rejected")] == 1
    assert by_outcome[("sellercloud", "unmappable")] == 1
    assert sum(n for (_, outcome), n in by_outcome.items() if outcome == "skipped_stale") == 20
    for (platform, outcome), count in by_outcome.items():
        scraped = await connector.metric(
            "order_sync_deliveries_total", {"platform": platform, "outcome": outcome}
        )
        assert scraped == count, (platform, outcome)
    assert await connector.metric("order_sync_deliveries_total") == len(results)
    for reason, count in dlq.items():
        assert await connector.metric("order_sync_dlq_total", {"reason": reason}) == count
    assert await connector.metric("order_sync_dlq_total") == 3
    assert await connector.metric("order_sync_events_total", {"result": "valid"}) == 27
    assert await connector.metric("order_sync_events_total", {"result": "invalid"}) == 3
    stale = sum(1 for r in results if r["outcome"] == "skipped_stale")
    assert await connector.metric("order_sync_idempotency_hits_total", {"kind": "stale"}) == stale
    for platform in ("vucustom", "sellercloud", "elasticpath", "ventmere"):
        sent = sum(1 for _ in suite[Platform(platform)].log)
        assert await connector.metric("order_sync_platform_requests_total", {"platform": platform}) == sent
        histogram = await connector.metric(
            "order_sync_platform_request_seconds_count", {"platform": platform}
        )
        assert histogram == sent
    # One observation per delivery (consumed by its platform's pipeline to its result acknowledged).
    assert await connector.metric("order_sync_event_seconds_count") == len(results)
    for pipeline in ("intake", "vucustom", "sellercloud", "elasticpath", "ventmere"):
        assert await connector.metric("order_sync_inflight_events", {"pipeline": pipeline}) == 0


async def _deliveries_total(connector: ConnectorProcess, expected: int) -> bool:
    return await connector.metric("order_sync_deliveries_total") >= expected
