"""Failures that end a delivery: a refusal at once, a platform that never answers at the budget."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.requestlog import LoggedRequest
from connector.devtools.simulators.server import SimulatorSuite
from tests.resilience.conftest import (
    VENTMERE_ACCOUNT,
    StartConnector,
    connector_env,
    order_ref,
    produce_events_now,
)
from tests.support.events import make_event
from tests.support.kafka import TopicReader, Topics

TIMEOUT_S = 0.5
BUDGET_S = 3.0


async def test_422_is_rejected_at_once_and_a_hung_platform_is_exhausted_at_the_budget(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    tmp_path: Path,
) -> None:
    suite.ventmere.faults.update(reject_status=422)
    suite.vucustom.faults.update(hang_rate=1.0)
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        connector_env(
            suite,
            topics,
            bootstrap,
            tmp_path / "store.db",
            "failures",
            PLATFORMS__VUCUSTOM__TIMEOUT_S=str(TIMEOUT_S),
            PLATFORMS__VUCUSTOM__MAX_ATTEMPTS="1000",
            PLATFORMS__VUCUSTOM__RETRY_BUDGET_S=str(BUDGET_S),
        )
    )
    await connector.wait_ready()
    refused = [
        make_event(f"rej-{n}", 1, {"ventmere": {"order_id": f"rej-{n}", "account_id": VENTMERE_ACCOUNT}})
        for n in range(3)
    ]
    hung = make_event("hang-0", 1, {"vucustom": {"id": 4242}})
    await produce_events_now(bootstrap, topics.input, [*refused, hung])
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(lambda r: len(r.of(topics.failure)) >= 4, 60, "4 failure results")
        await reader.poll(0.5)
        assert reader.of(topics.success) == []
        results = {r.json()["order_number"]: r.json() for r in reader.of(topics.failure)}
    assert len(results) == 4

    ventmere: dict[str, list[LoggedRequest]] = defaultdict(list)
    for entry in suite.ventmere.log:
        ventmere[order_ref(entry)].append(entry)
    for n in range(3):
        result = results[f"rej-{n}"]
        assert result["outcome"] == "rejected"
        assert result["status_code"] == 422
        assert result["attempts"] == 1
        assert result["error"]["category"] == "client_error"
        assert [e.status for e in ventmere[f"rej-{n}"]] == [422], "a 422 was retried"

    exhausted = results["hang-0"]
    duration_s = exhausted["duration_ms"] / 1000
    requests = [e for e in suite.vucustom.log if order_ref(e) == "4242"]
    assert exhausted["outcome"] == "exhausted"
    assert exhausted["status_code"] is None
    assert exhausted["attempts"] > 1
    assert exhausted["attempts"] == len(requests)
    assert all(e.fault == "hang" and e.status is None for e in requests)
    # No retry is scheduled past the budget: every attempt arrived within it (the simulator's clock,
    # from the first attempt's arrival; 0.3 s for the request's way there on a busy machine). The
    # last attempt may still run for one request timeout; the rest is the machine's scheduling.
    first = requests[0].at
    assert all(e.at - first <= BUDGET_S + 0.3 for e in requests), [round(e.at - first, 2) for e in requests]
    assert BUDGET_S <= duration_s <= BUDGET_S + TIMEOUT_S + 1.5, duration_s
    assert exhausted["error"]["category"] == "retry_budget"
    assert f"no response within {TIMEOUT_S:g}s" in exhausted["error"]["message"]
    assert "retry_budget" in exhausted["error"]["message"]
    print(
        f"\nfailures: 3 Ventmere 422s rejected with 1 request each;"
        f" hung VU Custom delivery exhausted after {exhausted['attempts']} attempts of {TIMEOUT_S}s timeout"
        f" in {duration_s:.2f}s (budget {BUDGET_S}s): {exhausted['error']['message']!r}"
    )
