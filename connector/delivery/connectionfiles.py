"""The watched directory of connection files (`ORDER_SYNC_CONNECTIONS_DIR`, README "Connections").

One YAML file per connection, so that each can be a Kubernetes Secret mounted as a file:
`{"platform": "sellercloud", "name": "eu", "base_url": ..., "password": ...}`, the other keys those
of the platform's settings in lower case; a key it leaves unset is the platform's. A secret `K` may
be `K_FILE`, a path whose content is the secret.

`scan` is called every few seconds, on a thread (it reads files). It stats every file and reads
again only what changed: a file, or a secret file one of them names (a Secret updated in place
swaps the file under the same path). A file with an error is refused with one log line naming the
file and the key, once per change, and the connection it declared before (if any) stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from connector.config import CONNECTION_NAME, SECRET_FILE_SUFFIX, PlatformsSettings
from connector.delivery.connections import ConnectionRegistry, DeclaredConnection
from connector.models import DEFAULT_CONNECTION, Platform

log = logging.getLogger(__name__)

#: How often the directory is looked at: a change takes effect within this plus one scan.
SCAN_INTERVAL_S = 2.0
_SUFFIXES = (".yaml", ".yml", ".json")

#: What a file and the secret files it names looked like when last read: (inode, mtime, size) each.
_Signature = tuple[tuple[str, int, int, int], ...]


class ConnectionFileError(ValueError):
    """One connection file cannot be used; the message names the file and the key."""


@dataclass(slots=True)
class _Seen:
    signature: _Signature
    #: The connection the file declares now, or the last good one while it has an error.
    declared: DeclaredConnection | None


class ConnectionFiles:
    def __init__(self, directory: Path, platforms: PlatformsSettings) -> None:
        self.directory = directory
        self._platforms = platforms
        self._seen: dict[Path, _Seen] = {}
        self._missing_logged = False
        self._scanned = False

    def scan(self) -> list[DeclaredConnection] | None:
        """Every connection the directory declares, or None when nothing changed since the last scan."""
        try:
            paths = sorted(
                entry
                for entry in self.directory.iterdir()
                if entry.suffix in _SUFFIXES and not entry.name.startswith(".") and entry.is_file()
            )
        except OSError as exc:
            if not self._missing_logged:
                log.error("connections directory unreadable: %s: %s", self.directory, exc.strerror or exc)
                self._missing_logged = True
            return None
        self._missing_logged = False
        changed = not self._scanned
        self._scanned = True
        for gone in [path for path in self._seen if path not in paths]:
            del self._seen[gone]
            changed = True
        for path in paths:
            seen = self._seen.get(path)
            signature = _signature(path, seen.declared if seen else None)
            if seen is not None and seen.signature == signature:
                continue
            changed = True
            try:
                declared = self._read(path)
            except ConnectionFileError as exc:
                log.error("connection file refused: %s", exc, extra={"fields": {"file": str(path)}})
                previous = seen.declared if seen is not None else None
                self._seen[path] = _Seen(signature, previous)
                continue
            # The signature again, now that the secret files the connection names are known.
            self._seen[path] = _Seen(_signature(path, declared), declared)
        if not changed:
            return None
        return self._unique([seen.declared for seen in self._seen.values() if seen.declared is not None])

    def _read(self, path: Path) -> DeclaredConnection:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConnectionFileError(f"{path}: cannot read: {exc}") from None
        if not isinstance(raw, dict):
            raise ConnectionFileError(f"{path}: must hold a mapping")
        keys: dict[str, Any] = {str(key).lower(): value for key, value in raw.items()}
        platform_name = str(keys.pop("platform", "")).lower()
        try:
            platform = Platform(platform_name)
        except ValueError:
            raise ConnectionFileError(
                f"{path}: platform: {platform_name or 'missing'} (one of {', '.join(Platform)})"
            ) from None
        name = str(keys.pop("name", "")).lower()
        if not CONNECTION_NAME.fullmatch(name) or name == DEFAULT_CONNECTION:
            raise ConnectionFileError(
                f"{path}: name: {name or 'missing'} (a connection is named [a-z0-9][a-z0-9-]{{0,62}},"
                " not `default`)"
            )
        if "connections" in keys:
            raise ConnectionFileError(f"{path}: connections: a connection has no connections of its own")
        try:
            settings = self._platforms.get(platform).for_connection(keys)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "?"
            message = first["msg"].removeprefix("Value error, ")
            raise ConnectionFileError(f"{path}: {key}: {message}") from None
        return DeclaredConnection(platform, name, settings, str(path), _secret_files(keys))

    @staticmethod
    def _unique(declared: list[DeclaredConnection]) -> list[DeclaredConnection]:
        first: dict[tuple[Platform, str], DeclaredConnection] = {}
        for item in declared:
            key = (item.platform, item.name)
            if key in first:
                log.error(
                    "connection file refused: %s: %s/%s is declared by %s already",
                    item.source,
                    item.platform.value,
                    item.name,
                    first[key].source,
                    extra={"platform": item.platform.value, "connection": item.name},
                )
                continue
            first[key] = item
        return list(first.values())


def _secret_files(keys: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(value) for key, value in keys.items() if key.endswith(SECRET_FILE_SUFFIX))


def _signature(path: Path, declared: DeclaredConnection | None) -> _Signature:
    files = [str(path), *(declared.secret_files if declared is not None else ())]
    stamps = []
    for name in files:
        try:
            stat = os.stat(name)
        except OSError:
            stamps.append((name, -1, -1, -1))
            continue
        stamps.append((name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


async def apply_scan(files: ConnectionFiles, registry: ConnectionRegistry, *, first: bool = False) -> None:
    """Scan once (on a thread) and apply what changed; the changes are logged, one line each (the
    first scan, at start-up, in one line: a directory of a thousand files is not a thousand lines)."""
    declared = await asyncio.to_thread(files.scan)
    if declared is None:
        return
    changes = registry.apply_files(declared)
    if first:
        log.info(
            "connections loaded: %d from %s, %d in all",
            len(changes.added),
            files.directory,
            len(registry),
            extra={"fields": {"connections": len(registry)}},
        )
        return
    for verb, names in (("added", changes.added), ("changed", changes.changed), ("removed", changes.removed)):
        for name in names:
            platform, _, connection = name.partition("/")
            log.info("connection %s: %s", verb, name, extra={"platform": platform, "connection": connection})


async def watch(files: ConnectionFiles, registry: ConnectionRegistry) -> None:
    """Apply the directory's changes every `SCAN_INTERVAL_S` until cancelled."""
    while True:
        await asyncio.sleep(SCAN_INTERVAL_S)
        try:
            await apply_scan(files, registry)
        except Exception:
            # A bug here must not take the connector down: the connections stay as they are.
            log.exception("connections directory scan failed")
