"""The `order-sync` command line. Each command parses its arguments here and delegates to its module."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

import click

from connector.commands.replay import ReplaySource
from connector.errors import ConfigError, DlqReason, OrderSyncError
from connector.models import Outcome, Platform

if TYPE_CHECKING:
    from connector.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

#: The outcomes a failure result can carry: what `replay --outcome` can select.
FAILED_OUTCOMES = [o.value for o in Outcome if not o.succeeded]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="order-sync-connector")
def cli() -> None:
    """order-sync: pushes canonical order changes from Kafka to commerce platforms."""


def main() -> None:
    """Console entry point: a usage error is one line on stderr and exit code 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx is not None else "order-sync --help", err=True)
        sys.exit(2)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "order-sync"
        click.echo(f"{command}: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"order-sync: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("order-sync: aborted", err=True)
        sys.exit(130)
    except OrderSyncError as exc:
        # A command's expected failures (Kafka unreachable, a tool missing): one line, exit 2.
        click.echo(f"{_command_path()}: {exc}", err=True)
        sys.exit(2)


def _command_path() -> str:
    named = [arg for arg in sys.argv[1:] if arg in cli.commands]
    return f"order-sync {named[0]}" if named else "order-sync"


def _quiet_kafka_client() -> None:
    # aiokafka logs each failed connection attempt; a command reports a failure once, in one line.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


#: A command's extra environment from its own options (`run --pipelines`), read with the settings.
Overrides = Callable[[dict[str, Any]], dict[str, str]]


def with_settings(*, quiet_kafka: bool = True, overrides: Overrides | None = None) -> Callable[[F], F]:
    """`--config FILE`, declared once for every command that reads the configuration, and the one
    way they load it: the command is called with `settings` (the environment over the file) in place
    of `config_file`; a configuration that fails is one line on stderr and exit 2."""

    def decorate(command: F) -> F:
        @click.option(
            "--config",
            "config_file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="YAML configuration file (the environment wins over it).",
        )
        @functools.wraps(command)
        def load_then_run(*args: Any, config_file: Path | None, **kwargs: Any) -> Any:
            from connector.config import load_settings

            if quiet_kafka:
                _quiet_kafka_client()
            extra = overrides(kwargs) if overrides is not None else {}
            try:
                settings = load_settings(config_file, {**os.environ, **extra} if extra else None)
            except ConfigError as exc:
                click.echo(f"order-sync: {exc}", err=True)
                sys.exit(2)
            return command(*args, settings=settings, **kwargs)

        return cast(F, load_then_run)

    return decorate


@cli.command()
@with_settings(
    quiet_kafka=False,
    overrides=lambda options: {"ORDER_SYNC_PIPELINES": p} if (p := options.get("pipelines")) else {},
)
@click.option(
    "--pipelines",
    help="Run only these pipelines, comma-separated: intake and/or platform names"
    " (overrides ORDER_SYNC_PIPELINES; default: the intake and every enabled platform).",
)
def run(pipelines: str | None, settings: Settings) -> None:
    """Run the connector until SIGTERM/SIGINT."""
    from connector.commands.run import run_connector

    sys.exit(run_connector(settings))


@cli.command()
@click.option("--check", is_flag=True, help="Exit 1 when schemas/ is stale instead of writing it.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
)
def schemas(check: bool, directory: Path) -> None:
    """Write schemas/*.json from the models."""
    from connector.commands.schemas import check_schemas, write_schemas

    if check:
        stale = check_schemas(directory)
        for name in stale:
            click.echo(f"stale: {directory / name}", err=True)
        sys.exit(1 if stale else 0)
    for path in write_schemas(directory):
        click.echo(f"wrote {path}")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=False, path_type=Path))
@with_settings(quiet_kafka=False)
def validate(file: Path, settings: Settings) -> None:
    """Validate canonical events (JSON or JSONL) and print each platform's request."""
    from connector.commands.validate import validate_file

    sys.exit(validate_file(file, settings))


@cli.command()
@click.option(
    "--events", type=click.IntRange(min=1), default=1000, show_default=True, help="Sample events to send."
)
@click.option("--chaos", is_flag=True, help="Turn on simulator faults: an outage, 429s, token expiry.")
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Accounts per platform the orders are spread over (default, conn1, ...).",
)
@click.option(
    "--bootstrap-servers", help="Use this Kafka instead of an embedded broker (topics get a suffix)."
)
@click.option(
    "--summary-json", type=click.Path(dir_okay=False, path_type=Path), help="Also write the summary as JSON."
)
def demo(
    events: int, chaos: bool, connections: int, bootstrap_servers: str | None, summary_json: Path | None
) -> None:
    """Broker, simulators, connector and sample events in one process, with live progress."""
    from rich.console import Console

    from connector.commands import eventloop
    from connector.commands.demo import run_demo

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    sys.exit(
        eventloop.run(
            run_demo(
                events,
                chaos,
                console,
                bootstrap_servers=bootstrap_servers,
                summary_json=summary_json,
                connections=connections,
            )
        )
    )


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--token-lifetime-s", type=click.FloatRange(min=1), default=3600.0, show_default=True)
@click.option(
    "--limits/--no-limits",
    default=True,
    show_default=True,
    help="Enforce the platforms' request limits (Sellercloud's hourly quota, Elastic Path's per-store rate).",
)
@click.option(
    "--accounts",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Accounts per platform, each with its own credentials and orders: default, acct1, acct2, ...",
)
def simulate(
    port: int,
    host: str,
    latency_ms: float,
    error_rate: float,
    token_lifetime_s: float,
    limits: bool,
    accounts: int,
) -> None:
    """The four platform simulators alone, for pointing a real connector at."""
    from connector.devtools.simulators.server import run_simulate

    sys.exit(
        run_simulate(
            port,
            latency_ms,
            host=host,
            error_rate=error_rate,
            token_lifetime_s=token_lifetime_s,
            platform_limits=limits,
            accounts=accounts,
        )
    )


@cli.command()
@click.argument("file", type=click.File("rb"))
@with_settings()
def produce(file: BinaryIO, settings: Settings) -> None:
    """Publish canonical events from JSON/JSONL (- for stdin) to the input topic."""
    from connector.commands.produce import produce_file

    sys.exit(produce_file(file.read(), settings.kafka))


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@cli.command()
@click.option(
    "--from",
    "source",
    type=click.Choice([s.value for s in ReplaySource]),
    default=ReplaySource.FAILURES.value,
    show_default=True,
)
@click.option("--platform", "platforms", multiple=True, type=click.Choice([p.value for p in Platform]))
@click.option("--outcome", "outcomes", multiple=True, type=click.Choice(FAILED_OUTCOMES))
@click.option("--reason", "reasons", multiple=True, type=click.Choice([r.value for r in DlqReason]))
@click.option("--since", help="Only failures at or after this RFC 3339 time.")
@click.option("--until", help="Only failures before this RFC 3339 time.")
@click.option("--yes", is_flag=True, help="Publish (without it, only print what would be published).")
@with_settings()
def replay(
    source: str,
    platforms: tuple[str, ...],
    outcomes: tuple[str, ...],
    reasons: tuple[str, ...],
    since: str | None,
    until: str | None,
    yes: bool,
    settings: Settings,
) -> None:
    """Re-drive failed deliveries (or DLQ records) as new events, after the cause was fixed."""
    import asyncio

    from connector.commands.replay import ReplayFilter
    from connector.commands.replay import replay as run_replay

    try:
        window = (_moment(since), _moment(until))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from exc
    wanted = ReplayFilter(
        platforms=frozenset(Platform(p) for p in platforms),
        outcomes=frozenset(Outcome(o) for o in outcomes),
        reasons=frozenset(DlqReason(r) for r in reasons),
        since=window[0],
        until=window[1],
    )
    sys.exit(asyncio.run(run_replay(settings.kafka, ReplaySource(source), wanted, publish=yes)))


@cli.command()
@click.argument("order_number")
@click.option(
    "--since",
    default="1d",
    show_default=True,
    help="Read from this RFC 3339 time, or this far back (30m, 2h, 3d, 1w).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the story as JSON.")
@click.option("--no-store", is_flag=True, help="Do not read the idempotency store (Kafka only).")
@with_settings()
def history(order_number: str, since: str, as_json: bool, no_store: bool, settings: Settings) -> None:
    """What happened to one order: every version received and each platform's outcome."""
    import asyncio

    from connector.commands.history import parse_since, read_history, render_text
    from connector.errors import KafkaReadError, StoreUnavailableError

    try:
        start = parse_since(since, datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    try:
        story = asyncio.run(read_history(settings, order_number, start, use_store=not no_store))
    except (KafkaReadError, StoreUnavailableError) as exc:
        click.echo(f"order-sync history: {exc}", err=True)
        sys.exit(2)
    if as_json:
        sys.stdout.buffer.write(story.to_json() + b"\n")
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
        for part in render_text(story):
            console.print(part)
    if not story.known:
        click.echo(f"order-sync history: order {order_number} is unknown since {story.since}", err=True)
        sys.exit(1)


@cli.command()
@click.argument("target")
@click.option("--reason", required=True, help="Why: shown in `order-sync status` and the logs.")
@click.option("--until", help="The pause ends by itself at this RFC 3339 time.")
@click.option("--by", help="Who pauses (default: the OS user).")
@with_settings()
def pause(target: str, reason: str, until: str | None, by: str | None, settings: Settings) -> None:
    """Hold PLATFORM or PLATFORM/CONNECTION on every replica: its deliveries wait, durably, in order."""
    import asyncio

    from connector.commands.control import pause as run_pause

    try:
        ends = _moment(until)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from exc
    sys.exit(asyncio.run(run_pause(settings.kafka, target, reason, ends, by, sys.stdout)))


@cli.command()
@click.argument("target")
@click.option("--by", help="Who resumes (default: the OS user).")
@with_settings()
def resume(target: str, by: str | None, settings: Settings) -> None:
    """End a pause of PLATFORM or PLATFORM/CONNECTION; held deliveries go out oldest first."""
    import asyncio

    from connector.commands.control import resume as run_resume

    sys.exit(asyncio.run(run_resume(settings.kafka, target, by, sys.stdout)))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print every replica's status document as JSON.")
@with_settings()
def status(as_json: bool, settings: Settings) -> None:
    """Every replica: pipelines, partitions, lag, in flight, and its connections' pauses and backlogs."""
    import asyncio

    from connector.commands.control import status as run_status

    sys.exit(asyncio.run(run_status(settings.kafka, as_json, sys.stdout)))
