"""The dashboard and the alert rules on a real Prometheus scraping a live connector.

A Prometheus from Debian's `prometheus` package scrapes an `order-sync run` subprocess every
second (job `order-sync`, target label namespace `orders`, as the chart's ServiceMonitor and the
rendered alert rules expect) while the connector works through a few hundred events to the four
simulators: applied, rejected, unmappable and stale deliveries, malformed input for the DLQ, and
an outage of one platform long enough to open its circuit and hold its connection (its deliveries
parked in the store, the platform's pipeline committing on) until it recovers. Last, an operator
pauses one connection with `order-sync pause`, as the README's "Operator controls" says, for the
panel of pauses in force (the connector's own control topic, so nothing else sees it). Then every
query of every dashboard panel, and every template variable, is evaluated through Prometheus's
HTTP API with the variables substituted as Grafana would: each must return data, with a value in
every label its legend names. The rendered alert rules are loaded too and must evaluate cleanly.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.deploy.deploy_metrics import tool
from tests.deploy.deploy_prometheus import PrometheusServer, ScrapeTarget, has_finite_value
from tests.deploy.deploy_support import NAMESPACE, PanelQuery, dashboard_queries, load_dashboard
from tests.support.events import encode, make_event
from tests.support.kafka import TopicReader, Topics, produce
from tests.support.process import ConnectorProcess, run_cli

pytestmark = pytest.mark.slow

StartConnector = Callable[[dict[str, str]], ConnectorProcess]
JOB = "order-sync"
SCRAPE_INTERVAL_S = 1.0
#: `$__rate_interval` for the panels: a window that spans the whole run.
RATE_INTERVAL = "2m"
#: How long the queries may take to show data once the connector is done (several scrapes).
SETTLE_S = 10.0
ORDERS = 250
#: Orders in the first of the two batches the input is produced in.
FIRST_BATCH = ORDERS // 2
STALE = 20
MALFORMED = (b"{oops", b'{"event_id": 1}', b"[]")
DOWN = "ventmere"
#: Paused by an operator once the input is done, and left paused for the dashboard's "Paused".
PAUSED = "elasticpath/default"
ACCOUNT = "1ac48942-405a-4841-a7d8-708f50dbe1ad"
#: Test speed only: the outage opens the circuit after 3 failures, probes every half second.
FAST_CIRCUIT = {
    "CIRCUIT_FAILURE_THRESHOLD": "3",
    "CIRCUIT_RESET_S": "0.5",
    "BACKOFF_BASE_S": "0.05",
    "BACKOFF_MAX_S": "0.5",
}
_LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\)$")


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[PrometheusServer]:
    server = PrometheusServer(tool("prometheus"), tmp_path)
    try:
        yield server
    finally:
        server.kill()


def _targets(n: int, ep_order: str | None = None) -> dict[str, dict[str, object]]:
    return {
        "vucustom": {"id": 1000 + n},
        "sellercloud": {"order_id": 500 + n, "company_id": 1},
        "elasticpath": {"order_id": ep_order or str(uuid.UUID(int=n))},
        "ventmere": {"order_id": f"vm-{n}", "account_id": ACCOUNT},
    }


def _input(suite: SimulatorSuite) -> tuple[list[tuple[bytes, bytes]], int]:
    """Messages for every outcome the dashboard shows, and the deliveries they make."""
    fulfilled = "fulfilled-order"
    suite.elasticpath.seed_order(fulfilled, shipping="fulfilled")
    messages = [(f"ord-{n}".encode(), encode(make_event(f"ord-{n}", 2, _targets(n)))) for n in range(ORDERS)]
    # An older version under a new event id: skipped_stale (an idempotency hit) everywhere.
    messages += [(f"ord-{n}".encode(), encode(make_event(f"ord-{n}", 1, _targets(n)))) for n in range(STALE)]
    # Rejected by Elastic Path (a fulfilled order accepts no change).
    messages.append((b"ord-f", encode(make_event("ord-f", 1, _targets(9001, ep_order=fulfilled)))))
    # Unmappable for Sellercloud (a US address without a state).
    no_state = make_event("ord-u", 1, _targets(9002))
    no_state["order"]["shipping_address"]["state"] = None
    messages.append((b"ord-u", encode(no_state)))
    deliveries = 4 * len(messages)
    messages += [(b"bad", value) for value in MALFORMED]
    return messages, deliveries


def _substitute(expr: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    assert "$" not in expr, f"unknown variable in {expr!r}"
    return expr


async def _resolve_variables(
    server: PrometheusServer, dashboard: dict[str, Any]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each query variable's values, in dashboard order, as Grafana lists them; the regex it substitutes."""
    variables = {"__rate_interval": RATE_INTERVAL}
    options: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.match(variable["definition"])
        assert match, variable["definition"]
        selector = _substitute(match["selector"], variables)
        options[variable["name"]] = values = await server.label_values(match["label"], selector)
        # A multi-value variable with every option selected, as Grafana formats it for Prometheus.
        variables[variable["name"]] = "(" + "|".join(values) + ")"
    return variables, options


async def _dashboard_problems(server: PrometheusServer, dashboard: dict[str, Any]) -> dict[str, str]:
    """What shows nothing: template variables without values, panel queries without data."""
    variables, options = await _resolve_variables(server, dashboard)
    problems = {name: "no values" for name, values in options.items() if not values}
    for query in dashboard_queries(dashboard):
        problem = await _problem(server, query, variables)
        if problem:
            problems[str(query)] = f"{problem}: {_substitute(query.expr, variables)}"
    return problems


async def _problem(server: PrometheusServer, query: PanelQuery, variables: dict[str, str]) -> str | None:
    """Why this panel query shows nothing useful, or None when it returns data."""
    series = await server.query(_substitute(query.expr, variables))
    if not series:
        return "no data"
    if not has_finite_value(series):
        return "only NaN/Inf"
    for label in _LEGEND_LABEL.findall(query.legend):
        if not all(s["metric"].get(label) for s in series):
            return f"series without the {label!r} its legend shows"
    return None


async def test_every_dashboard_query_returns_data_from_a_live_connector(
    broker: EmbeddedBroker,
    topics: Topics,
    suite: SimulatorSuite,
    connectors: StartConnector,
    prometheus: PrometheusServer,
    full_manifests: list[dict[str, Any]],
    find: Any,
    tmp_path: Path,
) -> None:
    bootstrap = broker.bootstrap_servers
    connector = connectors(
        {
            **topics.env("prometheus"),
            **suite.connector_env(),
            "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{tmp_path / 'store.db'}",
            # Small: the connection that is down parks its deliveries in the store instead of
            # filling it, so no pipeline pauses for it.
            "ORDER_SYNC_MAX_INFLIGHT_EVENTS": "20",
            # Its own control and status topics: the pause below holds this connector only.
            "ORDER_SYNC_KAFKA__CONTROL_TOPIC": f"control.{uuid.uuid4().hex[:8]}",
            "ORDER_SYNC_KAFKA__STATUS_TOPIC": f"status.{uuid.uuid4().hex[:8]}",
            **{f"ORDER_SYNC_PLATFORMS__{DOWN.upper()}__{k}": v for k, v in FAST_CIRCUIT.items()},
        }
    )
    rule_groups = find(full_manifests, "PrometheusRule")["spec"]["groups"]
    target = ScrapeTarget(
        JOB, f"127.0.0.1:{connector.http_port}", {"namespace": NAMESPACE, "pod": "order-sync-0"}
    )
    prometheus.start([target], rule_groups, SCRAPE_INTERVAL_S)
    await prometheus.wait_ready()
    await connector.wait_ready()

    async def seen(expr: str) -> bool:
        return bool(await prometheus.query(expr))

    # The connector gets through the input in a second or two, faster than Prometheus's first
    # scrape may come: rate() needs each series scraped before and after it moved. So the input
    # goes in two batches, after a first scrape and after the first batch's deliveries were
    # scraped: every counter the first batch creates grows again in the second.
    messages, deliveries = _input(suite)
    first, rest = messages[:FIRST_BATCH], messages[FIRST_BATCH:]
    await prometheus.wait_until(lambda: seen(f'up{{job="{JOB}"}} == 1'), 30, "the first scrape")
    suite[Platform(DOWN)].faults.outage = True
    await produce(bootstrap, topics.input, first)
    await prometheus.wait_until(
        lambda: seen(f'sum(order_sync_deliveries_total{{platform!="{DOWN}"}}) >= {3 * FIRST_BATCH}'),
        30,
        "the first batch's deliveries scraped",
    )
    await produce(bootstrap, topics.input, rest)

    async with TopicReader(bootstrap, topics.success, topics.failure, topics.dlq) as reader:
        # The outage as Prometheus sees it: the circuit open and the connection held, its
        # deliveries parked in the store rather than filling the pipeline's in-flight limit.
        await prometheus.wait_until(
            lambda: seen(f'max(order_sync_circuit_open{{platform="{DOWN}"}}) == 1'),
            30,
            f"{DOWN}'s circuit open",
        )
        await prometheus.wait_until(
            lambda: seen(f'max(order_sync_held_deliveries{{platform="{DOWN}"}}) > 0'),
            30,
            f"{DOWN}'s connection held",
        )
        suite[Platform(DOWN)].faults.outage = False
        await reader.wait_for(
            lambda r: (
                len(r.of(topics.success)) + len(r.of(topics.failure)) >= deliveries
                and len(r.of(topics.dlq)) >= len(MALFORMED)
            ),
            60,
            "every result and DLQ record",
        )
    await prometheus.wait_until(
        lambda: seen(f"sum(order_sync_deliveries_total) >= {deliveries}"), 30, "the last deliveries scraped"
    )
    await prometheus.wait_until(
        lambda: seen("max(order_sync_circuit_open) == 0"), 30, "the circuit closed again"
    )
    await prometheus.wait_until(
        lambda: seen("max(order_sync_held_deliveries) == 0"), 30, "every connection caught up"
    )
    # An operator pauses one connection (every replica applies it within about a second).
    code, out = await run_cli(
        connector.env, "pause", PAUSED, "--reason", "dashboard test", "--by", "deploy-tests"
    )
    assert code == 0, out
    platform, _, connection = PAUSED.partition("/")
    await prometheus.wait_until(
        lambda: seen(f'order_sync_paused{{platform="{platform}", connection="{connection}"}} == 1'),
        30,
        f"{PAUSED} paused",
    )

    # A counter that appeared in the last scrape has one sample, too few for rate(): poll until
    # every query has data, or report the ones that never get any.
    dashboard = load_dashboard()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while True:
        problems = await _dashboard_problems(prometheus, dashboard)
        if not problems or loop.time() > deadline:
            break
        await asyncio.sleep(SCRAPE_INTERVAL_S / 2)
    print(f"\n{len(dashboard_queries(dashboard))} panel queries evaluated; without data:", len(problems))
    for what, problem in problems.items():
        print(f"  {what}: {problem}")

    async def rules_evaluated() -> bool:
        return all(rule["health"] != "unknown" for rule in await prometheus.rules())

    await prometheus.wait_until(rules_evaluated, 10, "every alert rule evaluated")
    unhealthy = [(r["name"], r.get("lastError")) for r in await prometheus.rules() if r["health"] != "ok"]
    assert not unhealthy, f"alert rules that do not evaluate: {unhealthy}"
    assert not problems, f"dashboard queries without data: {problems}"
