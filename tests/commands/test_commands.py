"""Issue 8: every command has --help; a wrong argument is one clear line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connector.devtools.broker import EmbeddedBroker
from tests.support.events import encode, make_event
from tests.support.kafka import TopicReader, Topics

#: Every test here starts `order-sync` subprocesses.
pytestmark = pytest.mark.slow

ORDER_SYNC = str(Path(sys.executable).with_name("order-sync"))
COMMANDS = ["run", "demo", "simulate", "validate", "produce", "schemas", "replay", "history"]


def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORDER_SYNC, *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin.decode() if stdin is not None else None,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"Usage: order-sync {command}")


def test_top_level_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["run", "--bogus"],
        ["demo", "--events", "many"],
        ["demo", "--events", "0"],
        ["validate"],
        ["validate", "/nonexistent/events.json"],
        ["simulate", "--port", "99999"],
        ["replay", "--from", "nowhere"],
        ["schemas", "--check", "extra"],
        ["history"],
        ["history", "ord-1", "--since", "last week"],
    ],
)
def test_a_wrong_argument_is_one_line_and_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0] and "--help" in lines[0]


def test_invalid_configuration_names_the_key_in_one_line() -> None:
    result = run("run", env={"ORDER_SYNC_MAX_INFLIGHT_EVENTS": "lots", "PATH": "/usr/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "order-sync: invalid configuration: max_inflight_events (ORDER_SYNC_MAX_INFLIGHT_EVENTS):"
        " Input should be a valid integer, unable to parse string as an integer"
    ]
    unknown = run("run", env={"ORDER_SYNC_KAFKA__BOOTSTRAP": "x", "PATH": "/usr/bin"})
    assert unknown.returncode == 2
    assert "kafka.bootstrap" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1


def test_schemas_check_passes_on_the_checked_in_schemas_and_fails_when_stale(tmp_path: Path) -> None:
    repository = Path(__file__).resolve().parents[2]
    assert run("schemas", "--check", "--dir", str(repository / "schemas")).returncode == 0
    assert run("schemas", "--dir", str(tmp_path)).returncode == 0
    stale = tmp_path / "order-changed.v1.json"
    stale.write_text(stale.read_text().replace('"order.changed"', '"order.updated"'))
    result = run("schemas", "--check", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "order-changed.v1.json" in result.stderr


def test_validate_exits_1_on_an_invalid_event(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(encode(make_event("ord-1", 1)) + b"\n" + b'{"event_id": "x"}\n')
    result = run("validate", str(events))
    assert result.returncode == 1
    good = tmp_path / "good.json"
    good.write_bytes(encode(make_event("ord-1", 1)))
    assert run("validate", str(good)).returncode == 0


async def test_produce_publishes_stdin_keyed_by_order_number(broker: EmbeddedBroker, topics: Topics) -> None:
    env = {
        "PATH": "/usr/bin",
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "ORDER_SYNC_KAFKA__INPUT_TOPIC": topics.input,
    }
    lines = b"\n".join(encode(make_event(f"ord-{n}", 1)) for n in range(5))
    result = run("produce", "-", env=env, stdin=lines)
    assert result.returncode == 0, result.stderr
    async with TopicReader(broker.bootstrap_servers, topics.input) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 5, 20, "five events")
    assert sorted(r.key for r in reader.records) == [f"ord-{n}".encode() for n in range(5)]
    rejected = run("produce", "-", env=env, stdin=b'{"event_id": "x"}')
    assert rejected.returncode == 1
    assert "nothing published" in rejected.stderr
