"""Issue 8: `order-sync demo` (plain and --chaos) as a subprocess; its summary matches the result topics."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from connector.devtools.broker import EmbeddedBroker
from tests.support.kafka import TopicReader

ORDER_SYNC = str(Path(sys.executable).with_name("order-sync"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("chaos", "connections"), [(False, 1), (True, 1), (True, 3)], ids=["plain", "chaos", "chaos-3-accounts"]
)
async def test_demo_summary_matches_the_result_topics(
    broker: EmbeddedBroker, tmp_path: Path, chaos: bool, connections: int
) -> None:
    summary_path = tmp_path / "summary.json"
    args = ["demo", "--events", "200", "--bootstrap-servers", broker.bootstrap_servers]
    args += ["--summary-json", str(summary_path)] + (["--chaos"] if chaos else [])
    args += ["--connections", str(connections)]
    process = await asyncio.create_subprocess_exec(
        ORDER_SYNC, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    printed = output.decode()
    assert process.returncode == 0, printed
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["finished"] is True

    topics = summary["topics"]
    deliveries = sum(summary["expected"].values())
    async with TopicReader(
        broker.bootstrap_servers, topics["success"], topics["failure"], topics["dlq"]
    ) as reader:
        await reader.wait_for(
            lambda r: len(r.of(topics["success"])) + len(r.of(topics["failure"])) >= deliveries, 30, "results"
        )
        results = {
            r.json()["result_id"]: r.json()
            for r in reader.of(topics["success"]) + reader.of(topics["failure"])
        }
        dlq = Counter(r.headers["error.reason"] for r in reader.of(topics["dlq"]))
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results.values():
        label = result["platform"]
        if connections > 1:
            label += "/" + result["connection"]
        outcomes[label][result["outcome"]] += 1
    assert {p: dict(c) for p, c in outcomes.items()} == summary["outcomes"]
    assert dict(dlq) == summary["dlq"] and sum(dlq.values()) == summary["malformed"]
    assert {p: sum(c.values()) for p, c in outcomes.items()} == summary["expected"]
    for platform, counts in outcomes.items():
        assert counts["rejected"] == 0 and counts["exhausted"] == 0, (platform, counts)
        row = next(line for line in printed.splitlines() if line.startswith(f"│ {platform}"))
        assert f" {counts['applied']} " in row
    if chaos:
        assert "chaos" in printed
    if connections > 1:
        # Every platform's orders were spread over its accounts, and each account applied its own.
        assert {label.split("/")[1] for label in outcomes} == {"default", "conn1", "conn2"}


async def test_demo_creates_its_topics_on_the_broker_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from connector.commands import demo
    from connector.errors import KafkaUnavailableError

    asked: list[str] = []

    async def create_topics(bootstrap_servers: str, names: list[str], partitions: int = 1) -> None:
        asked.append(bootstrap_servers)
        raise KafkaUnavailableError("stop here")

    monkeypatch.setattr(demo, "create_topics", create_topics)
    with pytest.raises(KafkaUnavailableError):
        await demo.run_demo(1, False, Console(quiet=True), bootstrap_servers="kafka.example:9093")
    assert asked == ["kafka.example:9093"]
