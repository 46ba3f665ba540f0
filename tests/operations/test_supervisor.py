"""Background tasks never die in silence (README "Background tasks"): each failure is logged once
with its traceback and the task's name, then the task is restarted with backoff, or given up and
`/healthz` fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector import app as app_module
from connector.app import Connector
from connector.config import load_settings
from connector.control.reader import ControlReader
from connector.delivery import connectionfiles
from connector.devtools.broker import EmbeddedBroker
from connector.observability.metrics import Metrics
from connector.operations import supervisor as supervisor_module
from connector.operations.status import StatusPublisher
from connector.operations.supervisor import MAX_FAILURES_IN_A_ROW, Policy, Supervisor
from connector.pipeline.pipeline import Pipeline
from tests.pipeline.conftest import pipeline_env
from tests.support.kafka import Topics
from tests.support.servers import RecordingServer


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "RESTART_FIRST_S", 0.01)
    monkeypatch.setattr(supervisor_module, "RESTART_MAX_S", 0.02)


def failures_logged(caplog: pytest.LogCaptureFixture, task: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == supervisor_module.__name__
        and r.getMessage().startswith(f"background task {task} failed")
    ]


async def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - a plain condition, set by no event
            await asyncio.sleep(0.01)
    assert condition(), what


def failing(times: int, calls: list[int]) -> Callable[[], Coroutine[Any, Any, None]]:
    """A task that fails its first `times` runs, then runs until cancelled."""

    async def run() -> None:
        calls.append(1)
        if len(calls) <= times:
            raise RuntimeError(f"injected failure {len(calls)}")
        await asyncio.Event().wait()

    return run


async def test_a_restartable_task_is_logged_once_per_failure_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    supervisor = Supervisor(metrics.background_task_failures)
    calls: list[int] = []
    supervisor.start("probe", failing(2, calls), Policy.RESTART)
    await wait_for(lambda: len(calls) == 3, 5, "two restarts")
    logged = failures_logged(caplog, "probe")
    assert len(logged) == 2
    assert all(r.exc_info is not None and r.levelno == logging.ERROR for r in logged)
    assert "injected failure 1" in logged[0].getMessage()
    assert metrics.background_task_failures.labels("probe")._value.get() == 2
    assert supervisor.healthy and supervisor.liveness() == {}
    await supervisor.stop()


async def test_a_restartable_task_that_keeps_failing_is_given_up_and_the_process_is_unhealthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor()
    calls: list[int] = []
    task = supervisor.start("flaky", failing(100, calls), Policy.RESTART)
    await asyncio.wait_for(task, 5)
    assert len(calls) == MAX_FAILURES_IN_A_ROW
    assert not supervisor.healthy
    assert supervisor.liveness() == {"task:flaky": False}
    assert len(failures_logged(caplog, "flaky")) == MAX_FAILURES_IN_A_ROW


async def test_a_fatal_task_is_not_restarted(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor()
    calls: list[int] = []
    task = supervisor.start("commits", failing(1, calls), Policy.FATAL)
    await asyncio.wait_for(task, 5)
    assert calls == [1]
    assert supervisor.given_up == {"commits": "RuntimeError: injected failure 1"}
    assert len(failures_logged(caplog, "commits")) == 1


async def test_a_healthy_run_forgives_earlier_failures() -> None:
    now = [0.0]
    supervisor = Supervisor(clock=lambda: now[0])
    calls: list[int] = []

    async def fails_after_a_long_run() -> None:
        calls.append(1)
        now[0] += supervisor_module.HEALTHY_RUN_S  # each run "lasts" a healthy minute
        if len(calls) < 2 * MAX_FAILURES_IN_A_ROW:
            raise RuntimeError("late failure")

    await asyncio.wait_for(supervisor.start("long", fails_after_a_long_run, Policy.RESTART), 5)
    assert len(calls) == 2 * MAX_FAILURES_IN_A_ROW
    assert supervisor.healthy


async def test_an_exception_in_each_background_task_of_a_running_connector(
    broker: EmbeddedBroker,
    topics: Topics,
    endpoint: RecordingServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every task of `order-sync run` fails once: the restartable ones run again, the commit loops
    are given up and `/healthz` answers 503 naming them."""
    calls: dict[str, int] = {}

    def inject(owner: Any, attribute: str, task: str) -> None:
        original = getattr(owner, attribute)

        async def first_call_fails(*args: Any, **kwargs: Any) -> None:
            # A pipeline's loops are one task per pipeline: `intake-lag`, `vucustom-lag`.
            name = f"{args[0].name}-{task}" if args and isinstance(args[0], Pipeline) else task
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == 1:
                raise RuntimeError(f"injected into {name}")
            await original(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, first_call_fails)

    inject(ControlReader, "run", "control")
    inject(StatusPublisher, "run", "status")
    inject(Connector, "_store_watch", "store-watch")
    inject(connectionfiles, "watch", "connections")
    inject(app_module, "run_purger", "purge")
    inject(Pipeline, "_lag_loop", "lag")
    inject(Pipeline, "_commit_loop", "commits")
    connections_dir = tmp_path / "connections"
    connections_dir.mkdir()
    env = {
        **pipeline_env(topics, "supervised", endpoint, broker.bootstrap_servers, tmp_path / "store.db"),
        "ORDER_SYNC_PLATFORMS__VENTMERE__ENABLED": "false",
        "ORDER_SYNC_CONNECTIONS_DIR": str(connections_dir),
        "ORDER_SYNC_HTTP__PORT": "0",
        "ORDER_SYNC_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "ORDER_SYNC_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "ORDER_SYNC_KAFKA__CONTROL_TOPIC": f"control.{topics.input}",
        "ORDER_SYNC_KAFKA__STATUS_TOPIC": f"status.{topics.input}",
    }
    connector = Connector(load_settings(None, env))
    running = asyncio.create_task(connector.run())
    try:
        restartable = (
            "control",
            "status",
            "store-watch",
            "connections",
            "purge",
            "intake-lag",
            "vucustom-lag",
        )
        fatal = ("intake-commits", "vucustom-commits")
        await wait_for(
            lambda: all(calls.get(t, 0) >= 2 for t in restartable),
            30,
            f"every restartable task started again: {calls}",
        )
        await wait_for(lambda: all(calls.get(t, 0) for t in fatal), 30, "both commit loops failed")
        assert set(connector.supervisor.given_up) == set(fatal)
        for task in (*restartable, *fatal):
            logged = failures_logged(caplog, task)
            assert len(logged) == 1 and logged[0].exc_info is not None, task
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{connector.http.port}/healthz") as response,
        ):
            assert response.status == 503
            body = await response.json()
        assert sorted(body["failed"]) == ["task:intake-commits", "task:vucustom-commits"]
        assert all(calls[t] == 1 for t in fatal), f"a fatal task was restarted: {calls}"
    finally:
        connector.request_stop()
        await asyncio.wait_for(running, 30)
