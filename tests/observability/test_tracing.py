"""Issue 17: an event's W3C trace context reaches the requests it causes, its results and its DLQ copy."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.requestlog import LoggedRequest
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from connector.observability.tracecontext import TraceContext
from tests.support.events import encode, make_event
from tests.support.kafka import Record, TopicReader, Topics, produce_with_headers
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]
ACCOUNT = "1ac48942-405a-4841-a7d8-708f50dbe1ad"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
GIVEN = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
DLQ_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
REFUSED_TRACE_ID = "5c1a7e2f0b9d4e8a9f3b6c2d1e0f4a7b"
REFUSED = f"00-{REFUSED_TRACE_ID}-{'1' * 16}-01"
#: All-zero trace id: not a valid traceparent, so the event counts as one without.
INVALID = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"


def all_targets(n: int) -> dict[str, dict[str, object]]:
    return {
        "vucustom": {"id": 2000 + n},
        "sellercloud": {"order_id": 700 + n, "company_id": 1},
        "elasticpath": {"order_id": str(uuid.UUID(int=n))},
        "ventmere": {"order_id": f"vm-t{n}", "account_id": ACCOUNT},
    }


def requests_carrying(suite: SimulatorSuite, traceparent: str) -> dict[Platform, list[LoggedRequest]]:
    found = {p: [e for e in suite[p].log if e.header("traceparent") == traceparent] for p in Platform}
    return {p: entries for p, entries in found.items() if entries}


@pytest.mark.slow
async def test_trace_context_reaches_requests_results_and_dlq(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    given = make_event("ord-traced", 1, all_targets(1))
    untraced = make_event("ord-untraced", 1, all_targets(2))
    invalid = make_event("ord-invalid", 1, all_targets(3))
    # Elastic Path refuses changes to a fulfilled order: a failed delivery, logged with its trace.
    refused_order = str(uuid.UUID(int=4))
    suite.elasticpath.seed_order(refused_order, shipping="fulfilled")
    refused = make_event("ord-refused", 1, {"elasticpath": {"order_id": refused_order}})
    await produce_with_headers(
        bootstrap,
        topics.input,
        [
            (b"ord-traced", encode(given), [("traceparent", GIVEN.encode()), ("tracestate", STATE.encode())]),
            (b"ord-untraced", encode(untraced), []),
            (b"ord-invalid", encode(invalid), [("traceparent", INVALID.encode()), ("tracestate", b"a=1")]),
            (b"bad", b"{not json", [("traceparent", DLQ_TRACE.encode())]),
            (
                b"ord-refused",
                encode(refused),
                [("traceparent", REFUSED.encode())],
            ),
        ],
    )
    connector = connectors(
        {
            **topics.env("trace"),
            **suite.connector_env(),
            "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{tmp_path / 'store.db'}",
        }
    )
    async with TopicReader(bootstrap, topics.success, topics.failure, topics.dlq) as reader:
        await reader.wait_for(
            lambda r: (
                len(r.of(topics.success)) >= 12
                and len(r.of(topics.failure)) >= 1
                and len(r.of(topics.dlq)) >= 1
            ),
            60,
            "12 results, a failure and a DLQ copy",
        )
        failures = reader.of(topics.failure)
        results: dict[str, list[Record]] = {}
        for record in reader.of(topics.success):
            results.setdefault(record.json()["order_number"], []).append(record)
        dlq = reader.of(topics.dlq)

    # Every request the connector sent carried a valid traceparent.
    sent = [e for p in Platform for e in suite[p].log]
    assert len(sent) >= 13
    assert all(TraceContext.parse(e.header("traceparent") or "") is not None for e in sent)

    # The given traceparent and tracestate, unchanged: on the requests to each platform, and on every result.
    assert len(results["ord-traced"]) == 4
    assert {r.json()["platform"] for r in results["ord-traced"]} == {p.value for p in Platform}
    assert all(
        (r.headers.get("traceparent"), r.headers.get("tracestate")) == (GIVEN, STATE)
        for r in results["ord-traced"]
    )
    requests = requests_carrying(suite, GIVEN)
    assert set(requests) == set(Platform)
    assert all(e.header("tracestate") == STATE for entries in requests.values() for e in entries)

    # Without a (valid) traceparent: a new trace per delivery, the same on the request and its result.
    made: set[str] = set()
    for order in ("ord-untraced", "ord-invalid"):
        assert len(results[order]) == 4
        for record in results[order]:
            carried = TraceContext.parse(record.headers["traceparent"])
            assert carried is not None
            assert carried.trace_id not in (TRACE_ID, INVALID.split("-")[1])
            assert "tracestate" not in record.headers
            platform = Platform(record.json()["platform"])
            assert list(requests_carrying(suite, carried.traceparent)) == [platform]
            made.add(carried.trace_id)
    assert len(made) == 8, "each delivery of an event without a trace has a trace of its own"

    # A failed delivery's result carries its trace, and so does the line that logs the failure.
    assert [r.json()["outcome"] for r in failures] == ["rejected"]
    assert failures[0].headers["traceparent"] == REFUSED
    assert list(requests_carrying(suite, REFUSED)) == [Platform.ELASTICPATH]
    lines = [orjson.loads(line) for line in _json_lines(connector.log_path)]
    failed_lines = [line for line in lines if line["message"].startswith("delivery failed")]
    assert [(line.get("event_id"), line.get("trace_id")) for line in failed_lines] == [
        (refused["event_id"], REFUSED_TRACE_ID)
    ]

    # The DLQ copy carries the input's traceparent unchanged, and its log line names the trace.
    assert [(r.value, r.headers.get("traceparent")) for r in dlq] == [(b"{not json", DLQ_TRACE)]
    dlq_lines = [line for line in lines if line["message"].startswith("message sent to DLQ")]
    assert [line.get("trace_id") for line in dlq_lines] == [DLQ_TRACE.split("-")[1]]


def _json_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.startswith(b"{")]
