"""The benchmark runner's code paths, end to end with a handful of events (no speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.connections import run as run_connections
from bench.events import PLATFORM_COUNT
from bench.own import own_work
from bench.run import main
from connector.stores.memory import MemoryStore
from connector.stores.sqlite import SqliteStore


@pytest.mark.slow
def test_every_scenario_runs_with_a_few_events(tmp_path: Path) -> None:
    readme, results = tmp_path / "README.md", tmp_path / "results.json"
    argv = [
        "--events", "40",
        "--latencies", "0",
        "--paced-latency", "0",
        "--naive-seconds", "3",
        "--paced-rate", "20",
        "--paced-seconds", "2",
        "--backlog", "80",
        "--backlog-timeout", "120",
        # Joining time is not measured: the embedded broker holds a first join for half of it.
        "--session-timeout-ms", "3000",
        "--readme", str(readme),
        "--json", str(results),
    ]  # fmt: skip

    assert main(argv) == 0

    rows = json.loads(results.read_text())["rows"]
    systems = {(row["scenario"], row["system"]) for row in rows}
    assert systems == {
        ("40 events, 0 ms", "limit"),
        ("40 events, 0 ms", "order-sync"),
        ("40 events, 0 ms", "naive"),
        ("40 events, 0 ms", "pipeline-floor"),
        ("40 events, 0 ms", "pipeline-floor-one"),
        ("paced, 0 ms", "order-sync"),
        ("paced, 0 ms", "kafka floor"),
        ("backlog 80, 0 ms", "order-sync"),
    }
    order_sync = next(r for r in rows if r["system"] == "order-sync" and r["scenario"].startswith("40"))
    assert order_sync["events"] == 40
    assert order_sync["deliveries"] == 160
    for design in ("pipeline-floor", "pipeline-floor-one"):
        floor = next(r for r in rows if r["system"] == design)
        assert (floor["events"], floor["deliveries"]) == (40, 160), design
    text = readme.read_text()
    assert "| 40 events, 0 ms | order-sync |" in text
    assert "40 events, 0 ms: pipeline-floor CPU per event ÷ limit's = " in text
    assert "40 events, 0 ms: pipeline-floor-one CPU per event ÷ limit's = " in text


@pytest.mark.parametrize("store", ["sqlite", "memory"])
async def test_the_own_work_yardstick_delivers_every_event_to_every_platform(
    tmp_path: Path, store: str
) -> None:
    backend = SqliteStore(tmp_path / "own.db") if store == "sqlite" else MemoryStore()

    cpu, results = await own_work(40, backend, profile=None)

    assert results == 40 * PLATFORM_COUNT
    assert cpu > 0


async def test_the_own_work_yardstick_delivers_every_event_over_many_connections(tmp_path: Path) -> None:
    cpu, results = await own_work(400, SqliteStore(tmp_path / "own.db"), profile=None, connections=300)

    assert results == 400 * PLATFORM_COUNT
    assert cpu > 0


async def test_the_connections_bench_starts_a_connector_with_connection_files(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await run_connections(connections=9, events=40, ready=False)

    out = capsys.readouterr().out
    # Four platforms' own keys and eight files.
    assert "    9 connection(s) per process (12 in all): files loaded" in out
    assert "own work, 40 events over 9 connection(s) per platform" in out
