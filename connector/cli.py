"""The `order-sync` command line. Each command parses its arguments here and delegates to its module."""

from __future__ import annotations

import sys
from pathlib import Path

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
