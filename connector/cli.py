"""The `order-sync` command line. Each command parses its arguments here and delegates to its module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import click

from connector.errors import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="order-sync-connector")
def main() -> None:
    """order-sync: pushes canonical order changes from Kafka to commerce platforms."""


def _fail_config(exc: ConfigError) -> None:
    click.echo(f"order-sync: {exc}", err=True)
    sys.exit(2)


@main.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def run(config_file: Path | None) -> None:
    """Run the connector until SIGTERM/SIGINT."""
    from connector.app import run_connector
    from connector.config import load_settings

    try:
        settings = load_settings(config_file)
    except ConfigError as exc:
        _fail_config(exc)
        return
    sys.exit(run_connector(settings))


@main.command()
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
    from connector.schemas import check_schemas, write_schemas

    if check:
        stale = check_schemas(directory)
        for name in stale:
            click.echo(f"stale: {directory / name}", err=True)
        sys.exit(1 if stale else 0)
    for path in write_schemas(directory):
        click.echo(f"wrote {path}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=False, path_type=Path))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(file: Path, config_file: Path | None) -> None:
    """Validate canonical events (JSON or JSONL) and print each platform's request."""
    from connector.validate import validate_file

    sys.exit(validate_file(file, config_file))


@main.command()
@click.option(
    "--events", type=click.IntRange(min=1), default=1000, show_default=True, help="Sample events to send."
)
@click.option("--chaos", is_flag=True, help="Turn on simulator faults: an outage, 429s, token expiry.")
def demo(events: int, chaos: bool) -> None:
    """Broker, simulators, connector and sample events in one process, with live progress."""
    import asyncio

    from rich.console import Console

    from connector.demo import run_demo

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    sys.exit(asyncio.run(run_demo(events, chaos, console)))


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--token-lifetime-s", type=click.FloatRange(min=1), default=3600.0, show_default=True)
def simulate(port: int, host: str, latency_ms: float, error_rate: float, token_lifetime_s: float) -> None:
    """The four platform simulators alone, for pointing a real connector at."""
    from connector.simulators.server import run_simulate

    sys.exit(
        run_simulate(port, latency_ms, host=host, error_rate=error_rate, token_lifetime_s=token_lifetime_s)
    )


@main.command()
@click.argument("file", type=click.File("rb"))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def produce(file: BinaryIO, config_file: Path | None) -> None:
    """Publish canonical events from JSON/JSONL (- for stdin) to the input topic."""
    from connector.config import load_settings
    from connector.produce import produce_file

    try:
        settings = load_settings(config_file)
    except ConfigError as exc:
        _fail_config(exc)
        return
    sys.exit(produce_file(file.read(), settings.kafka))
