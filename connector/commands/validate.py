"""`order-sync validate FILE`: check canonical events and show the exact request per targeted platform.

Nothing is sent. Credentials never appear: auth headers are printed with their values masked,
and token flows are not run (their header is shown as `Bearer ***`). Without a configuration,
platforms use their default base URLs and placeholder credentials; Sellercloud's URL keeps the
`{server_id}` placeholder and Ventmere, which has no default, uses `https://api.ventmere.example`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson
from pydantic import SecretStr

from connector.codec import decode_event
from connector.config import PlatformSettings, Settings
from connector.delivery.connectionfiles import ConnectionFiles
from connector.errors import ConfigError, InvalidEventError, UnmappableError
from connector.models import DEFAULT_CONNECTION, OrderChangedEvent, Platform
from connector.observability.redaction import Redactor, secrets_of
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport

#: Stand-ins for what a configuration would give; only ever printed masked or as placeholders.
PLACEHOLDERS: dict[Platform, dict[str, Any]] = {
    Platform.VUCUSTOM: {"api_key": SecretStr("api-key"), "api_secret": SecretStr("api-secret")},
    Platform.SELLERCLOUD: {
        "server_id": "{server_id}",
        "username": "username",
        "password": SecretStr("password"),
    },
    Platform.ELASTICPATH: {"client_id": "client-id", "client_secret": SecretStr("client-secret")},
    Platform.VENTMERE: {
        "base_url": "https://api.ventmere.example",
        "api_token": SecretStr("api-token"),
        "organization_id": "{organization_id}",
    },
}


def validate_file(file: Path, settings: Settings, out: TextIO | None = None) -> int:
    """Print each event's verdict and requests; 0 when every event is valid, 1 otherwise."""
    out = out or sys.stdout
    try:
        raw = file.read_bytes()
    except OSError as exc:
        print(f"order-sync: cannot read {file}: {exc}", file=sys.stderr)
        return 1
    redactor = Redactor(secrets_of(settings))
    transport = Transport()  # never used: no request is sent and token flows are not run
    files = (
        ConnectionFiles(settings.connections_dir, settings.platforms) if settings.connections_dir else None
    )
    from_files = {(c.platform, c.name): c.settings for c in (files.scan() or [])} if files else {}
    valid = invalid = 0
    for label, document in _documents(raw):
        try:
            event = decode_event(document)
        except InvalidEventError as exc:
            invalid += 1
            print(f"{label}: invalid ({exc.reason.value}): {redactor.redact(str(exc))}", file=out)
            continue
        valid += 1
        print(f"{label}: valid: order {event.order.order_number} version {event.order.version}", file=out)
        for platform in event.targets.platforms():
            print(_describe(platform, event, settings, from_files, transport, redactor), file=out)
    if valid + invalid == 0:
        print(f"{file}: no events found", file=out)
        return 1
    print(f"events: {valid} valid, {invalid} invalid", file=out)
    return 1 if invalid else 0


def _documents(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """(label, raw JSON) per event: one JSON event, a JSON array of events, or JSON Lines."""
    try:
        whole = orjson.loads(raw)
    except orjson.JSONDecodeError:
        whole = None
    else:
        if isinstance(whole, list):
            for index, item in enumerate(whole, 1):
                yield f"event {index}", orjson.dumps(item)
            return
        yield "event 1", raw
        return
    for number, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            yield f"line {number}", line


def _describe(
    platform: Platform,
    event: OrderChangedEvent,
    settings: Settings,
    from_files: dict[tuple[Platform, str], PlatformSettings],
    transport: Transport,
    redactor: Redactor,
) -> str:
    own = settings.platforms.get(platform)
    if own.enabled is False:
        return f"  {platform.value}: disabled in the configuration; nothing would be sent"
    connection = event.targets.connection_of(platform)
    if connection == DEFAULT_CONNECTION:
        platform_settings = own
    elif connection in own.connections:
        platform_settings = own.for_connection(own.connections[connection])
    elif (platform, connection) in from_files:
        platform_settings = from_files[(platform, connection)]
    else:
        return f"  {platform.value}: unmappable: connection {connection!r} is not configured"
    label = (
        platform.value if connection == DEFAULT_CONNECTION else f"{platform.value} (connection {connection})"
    )
    try:
        adapter = build_adapter(
            platform, _with_placeholders(platform, platform_settings), transport, redactor
        )
        request = adapter.build_request(event)
    except UnmappableError as exc:
        return f"  {label}: unmappable: {exc}"
    except ConfigError as exc:
        return f"  {label}: misconfigured: {exc}"
    lines = [f"  {label}:", f"    {request.method} {request.url}"]
    for name, value in [*request.headers, *adapter.authenticator.masked_headers()]:
        lines.append(f"    {name}: {redactor.redact(value)}")
    lines.append("")
    lines.extend(f"    {line}" for line in pretty_json(request.body).splitlines())
    return "\n".join(lines)


def _with_placeholders(platform: Platform, settings: PlatformSettings) -> PlatformSettings:
    missing = {
        name: value
        for name, value in PLACEHOLDERS[platform].items()
        if getattr(settings, name) is None and not (name == "server_id" and settings.base_url)
    }
    return settings.model_copy(update=missing) if missing else settings


def exact_json(body: bytes) -> Any:
    """The body decoded with every number kept as sent (orjson writes the fragments back verbatim)."""
    return json.loads(body, parse_float=orjson.Fragment, parse_int=orjson.Fragment)


def pretty_json(body: bytes) -> str:
    """The body indented, every number exactly as sent (no float round trip)."""
    return orjson.dumps(exact_json(body), option=orjson.OPT_INDENT_2).decode("utf-8")
