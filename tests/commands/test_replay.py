"""Issue 8: a rejected delivery, the simulator fixed, `order-sync replay` -> applied on that platform only."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from connector.commands.replay import ReplayFilter, plan_dlq_replays
from connector.config import KafkaSettings
from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from connector.errors import DlqReason
from tests.support.events import encode, make_event
from tests.support.kafka import TopicReader, Topics, produce_events, produce_with_headers
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]
ORDER_SYNC = str(Path(sys.executable).with_name("order-sync"))
ACCOUNT = "1ac48942-405a-4841-a7d8-708f50dbe1ad"


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        ORDER_SYNC, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_replay_redrives_only_the_failed_platform(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    env = {
        **topics.env("replay"),
        **suite.connector_env(),
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{tmp_path / 'store.db'}",
    }
    connector = connectors(env)
    await connector.wait_ready()
    suite.ventmere.faults.update(reject_status=422)
    targets = {
        "vucustom": {"id": 7},
        "sellercloud": {"order_id": 7, "company_id": 1},
        "elasticpath": {"order_id": "ep-7"},
        "ventmere": {"order_id": "vm-7", "account_id": ACCOUNT},
    }
    original = make_event("ord-replay", 3, targets)
    await produce_events(bootstrap, topics.input, [original])
    async with TopicReader(bootstrap, topics.success, topics.failure) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 4, 30, "four results")
        failures = [r.json() for r in reader.of(topics.failure)]
        assert [(f["platform"], f["outcome"], f["attempts"]) for f in failures] == [
            ("ventmere", "rejected", 1)
        ]

        suite.ventmere.faults.update(reject_status=None)
        before = {p: len(suite[p].log) for p in suite.simulators}
        cli_env = {**connector.env}
        code, dry_run = await run_cli(cli_env, "replay", "--from", "failures", "--platform", "ventmere")
        assert code == 0, dry_run
        assert "would publish" in dry_run and original["event_id"] in dry_run
        code, published = await run_cli(cli_env, "replay", "--from", "failures", "--yes")
        assert code == 0, published
        assert "published 1 events" in published

        await reader.wait_for(lambda r: len(r.of(topics.success)) >= 4, 30, "the replayed delivery")
        replayed = [
            r.json() for r in reader.of(topics.success) if r.json()["event_id"] != original["event_id"]
        ]
    assert [(r["platform"], r["outcome"]) for r in replayed] == [("ventmere", "applied")]
    after = {p: len(suite[p].log) for p in suite.simulators}
    assert {p.value: after[p] - before[p] for p in after} == {
        "vucustom": 0,
        "sellercloud": 0,
        "elasticpath": 0,
        "ventmere": 1,
    }


async def test_a_replay_carries_the_original_records_traceparent(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, tmp_path: Path
) -> None:
    # A replay is the same change again: its deliveries belong to the trace the original started.
    bootstrap = broker.bootstrap_servers
    env = {
        **os.environ,
        **topics.env("replay-trace"),
        **suite.connector_env(),
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{tmp_path / 'store.db'}",
    }
    failed, dead = make_event("ord-failed", 1), make_event("ord-dead", 1)
    failed_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    dead_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    await produce_with_headers(
        bootstrap,
        topics.input,
        [(b"ord-failed", encode(failed), [("traceparent", failed_trace.encode()), ("tracestate", b"a=1")])],
    )
    result = {
        "event_id": failed["event_id"],
        "platform": "ventmere",
        "outcome": "rejected",
        "completed_at": "2026-01-01T00:00:00Z",
    }
    await produce_with_headers(bootstrap, topics.failure, [(b"ord-failed", orjson.dumps(result), [])])
    dlq_headers = [("error.reason", b"conflict"), ("traceparent", dead_trace.encode())]
    await produce_with_headers(bootstrap, topics.dlq, [(b"ord-dead", encode(dead), dlq_headers)])

    for source in ("failures", "dlq"):
        code, output = await run_cli(env, "replay", "--from", source, "--yes")
        assert code == 0, output
        assert "published 1 events" in output
    async with TopicReader(bootstrap, topics.input) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 3, 30, "the original and two replays")
        replays = {
            r.json()["replay_of"]: (r.headers.get("traceparent"), r.headers.get("tracestate"))
            for r in reader.records
            if r.json().get("replay_of")
        }
    assert replays == {failed["event_id"]: (failed_trace, "a=1"), dead["event_id"]: (dead_trace, None)}


async def test_dlq_replay_selects_records_by_their_reason(broker: EmbeddedBroker, topics: Topics) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        input_topic=topics.input,
        success_topic=topics.success,
        failure_topic=topics.failure,
        dlq_topic=topics.dlq,
    )
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, enable_idempotence=False)
    await producer.start()
    try:
        for reason in ("decode", "schema", "conflict", "unheard-of"):
            await producer.send_and_wait(
                topics.dlq, orjson.dumps(make_event("dlq-1", 1)), headers=[("error.reason", reason.encode())]
            )
    finally:
        await producer.stop()

    wanted = ReplayFilter(reasons=frozenset({DlqReason.SCHEMA, DlqReason.CONFLICT}))
    replays = await plan_dlq_replays(settings, wanted)
    reasons = sorted(r.description.partition("(")[2].partition(")")[0] for r in replays)
    assert reasons == ["conflict", "schema"]
    assert len(await plan_dlq_replays(settings, ReplayFilter())) == 4
