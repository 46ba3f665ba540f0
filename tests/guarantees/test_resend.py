"""A fulfilment in flight at a hard kill is sent again after the restart; Elastic Path already holds the
order fulfilled and refuses the change, and the delivery must still end `applied`, not `rejected`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.requestlog import LoggedRequest
from connector.devtools.simulators.server import SimulatorSuite
from tests.guarantees.conftest import StartConnector, connector_env
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics, produce_events

pytestmark = pytest.mark.slow

ORDERS = 10
#: Elastic Path answers this late: the kill lands while fulfilments are at the platform, unanswered.
LATENCY_S = 1.0


def is_fulfil(entry: LoggedRequest) -> bool:
    body: Any = entry.body
    return entry.method == "PUT" and isinstance(body, dict) and body["data"].get("shipping") == "fulfilled"


async def test_a_fulfil_resent_after_a_hard_kill_ends_applied(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    events = [
        make_event(f"ord-{n}", version, {"elasticpath": {"order_id": f"ep-{n}"}}, status=status)
        for n in range(ORDERS)
        for version, status in ((1, "open"), (2, "fulfilled"))
    ]
    suite.elasticpath.faults.update(latency_s=LATENCY_S)
    first = connectors(connector_env(broker, topics, "resend", store_url, suite))
    await first.wait_ready()
    await produce_events(broker.bootstrap_servers, topics.input, events)
    log = suite.elasticpath.log
    await log.wait_for(lambda log: any(is_fulfil(e) for e in log), 60)
    first.kill()
    unanswered = [e for e in log if is_fulfil(e) and e.status is None]
    assert unanswered, "no fulfilment was in flight at the kill"
    # The platform finishes what it received: those orders are fulfilled, their answers lost.
    await log.wait_for(lambda log: all(e.status is not None for e in log), 10)
    in_flight = {str(e.order_id) for e in unanswered}
    assert all(suite.elasticpath.orders[order]["shipping"] == "fulfilled" for order in in_flight)

    suite.elasticpath.faults.update(latency_s=0.0)
    second = connectors(connector_env(broker, topics, "resend", store_url, suite))
    async with TopicReader(broker.bootstrap_servers, topics.success, topics.failure) as reader:
        await reader.wait_for(
            lambda r: len({x.json()["result_id"] for x in r.of(topics.success)}) >= len(events),
            90,
            "a result per delivery",
            fail_on=topics.failure,
        )
        results = {r.json()["result_id"]: r.json() for r in reader.of(topics.success)}
    second.assert_running()
    assert Counter(r["outcome"] for r in results.values()) == {"applied": len(events)}
    resent = {order: [(e.method, e.status) for e in log.for_order(order)] for order in in_flight}
    for order, requests in resent.items():
        # The v1 update, the fulfilment lost at the kill, its resend refused, the read that saw it done.
        assert requests == [("PUT", 200), ("PUT", 200), ("PUT", 422), ("GET", 200)], (order, requests)
    print(
        f"\nresend: {len(in_flight)} Elastic Path fulfilments in flight at the SIGKILL were sent again after"
        f" the restart, refused 422 (already fulfilled), read back and reported applied;"
        f" {len(results)} results, all applied, none on the failure topic"
    )
