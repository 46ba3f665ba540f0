"""Which accounts ("connections") each platform has, and the dispatcher that serves each one.

A connection is one account on one platform (README "Connections"): its own base URL, credentials,
token, rate limit, quota, concurrency, circuit and throttle, which is to say its own adapter and
`PlatformDispatcher`. This registry is the one place that answers "which account, with which
settings and state": the runner asks it once per delivery, nothing else keeps a map by connection.

Connections come from two places. The configuration (environment and `--config`) declares the
platform's `default` connection and any under `connections`; those are fixed for the process's
life. A watched directory (`connections_dir`) declares the rest, one file each; `apply_files`
swaps that set for a new one while deliveries flow. A connection whose settings change gets a new
dispatcher: its next request uses the new credentials, and the token cached with the old ones is
dropped with the old adapter. Deliveries already sending on the old dispatcher finish there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from connector.config import PlatformSettings, Settings, default_connection_configured
from connector.delivery.dispatcher import PlatformDispatcher
from connector.errors import ConfigError
from connector.models import DEFAULT_CONNECTION, Platform
from connector.observability.metrics import Metrics
from connector.observability.redaction import Redactor
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport

log = logging.getLogger(__name__)

#: The `connection` label of a delivery whose connection is not configured: never a name from an
#: event, so the label set stays the configured connections (README "Metrics").
UNKNOWN_CONNECTION_LABEL = "_unknown"


@dataclass(frozen=True, slots=True)
class DeclaredConnection:
    """A connection as one file of the watched directory declares it."""

    platform: Platform
    name: str
    settings: PlatformSettings
    #: The file it came from, for the log lines about it.
    source: str
    #: The secret files (`K_FILE`) it names: a change to one is a change to the connection.
    secret_files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileChanges:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class ConnectionRegistry:
    def __init__(
        self,
        platforms: list[Platform],
        transport: Transport,
        redactor: Redactor,
        metrics: Metrics,
    ) -> None:
        self._platforms = set(platforms)
        self._transport = transport
        self._redactor = redactor
        self._metrics = metrics
        self._dispatchers: dict[tuple[Platform, str], PlatformDispatcher] = {}
        #: Where each connection came from: None for the configuration, else its file's declaration.
        self._from_files: dict[tuple[Platform, str], DeclaredConnection] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        platforms: list[Platform],
        transport: Transport,
        redactor: Redactor,
        metrics: Metrics,
    ) -> ConnectionRegistry:
        """The connections the configuration declares for `platforms`; `ConfigError` naming the
        connection when one cannot be built (missing credentials, say)."""
        registry = cls(platforms, transport, redactor, metrics)
        for platform in platforms:
            own = settings.platforms.get(platform)
            if default_connection_configured(own, settings.connections_dir is not None):
                registry._add(platform, DEFAULT_CONNECTION, own)
            for name, keys in own.connections.items():
                try:
                    registry._add(platform, name, own.for_connection(keys))
                except ConfigError as exc:
                    raise ConfigError(
                        f"invalid configuration: platforms.{platform.value}.connections.{name}: {exc}"
                    ) from None
        return registry

    @classmethod
    def of(
        cls,
        dispatchers: Mapping[Platform, PlatformDispatcher]
        | Mapping[tuple[Platform, str], PlatformDispatcher],
    ) -> ConnectionRegistry:
        """A registry of ready-made dispatchers (tests, benchmarks): by platform, each its `default`
        connection, or by (platform, connection)."""
        keyed = {
            (key, DEFAULT_CONNECTION) if isinstance(key, Platform) else key: dispatcher
            for key, dispatcher in dispatchers.items()
        }
        registry = cls(sorted({platform for platform, _ in keyed}), Transport(), Redactor(()), Metrics())
        registry._dispatchers.update(keyed)
        return registry

    def dispatcher(self, platform: Platform, connection: str) -> PlatformDispatcher | None:
        return self._dispatchers.get((platform, connection))

    def items(self) -> list[tuple[Platform, str, PlatformDispatcher]]:
        return [(platform, name, d) for (platform, name), d in sorted(self._dispatchers.items())]

    def label_of(self, platform: Platform, connection: str) -> str:
        """The `connection` label of metrics about this connection: its name when configured, else
        `_unknown`, so that no name from an event becomes a label value."""
        return connection if (platform, connection) in self._dispatchers else UNKNOWN_CONNECTION_LABEL

    def names(self, platform: Platform) -> list[str]:
        return sorted(name for p, name in self._dispatchers if p is platform)

    def __len__(self) -> int:
        return len(self._dispatchers)

    def apply_files(self, declared: list[DeclaredConnection]) -> FileChanges:
        """Make the file-declared connections exactly `declared` (already validated and built-checked
        by the caller's loader). A name the configuration declares is refused, once per file."""
        wanted: dict[tuple[Platform, str], DeclaredConnection] = {}
        for item in declared:
            key = (item.platform, item.name)
            if item.platform not in self._platforms:
                continue  # a platform this process does not run
            if key in self._dispatchers and key not in self._from_files:
                log.error(
                    "connection file refused: %s: %s/%s is declared in the configuration already",
                    item.source,
                    item.platform.value,
                    item.name,
                    extra={"platform": item.platform.value, "connection": item.name},
                )
                continue
            wanted[key] = item
        added: list[str] = []
        changed: list[str] = []
        removed: list[str] = []
        for key in [k for k in self._from_files if k not in wanted]:
            del self._from_files[key]
            del self._dispatchers[key]
            removed.append(f"{key[0].value}/{key[1]}")
        for key, item in wanted.items():
            known = self._from_files.get(key)
            if known is not None and known.settings == item.settings:
                continue
            try:
                self._add(item.platform, item.name, item.settings)
            except ConfigError as exc:
                log.error(
                    "connection file refused: %s: %s",
                    item.source,
                    exc,
                    extra={"platform": item.platform.value, "connection": item.name},
                )
                continue
            self._from_files[key] = item
            (added if known is None else changed).append(f"{key[0].value}/{key[1]}")
        return FileChanges(tuple(added), tuple(changed), tuple(removed))

    def _add(self, platform: Platform, name: str, settings: PlatformSettings) -> None:
        adapter = build_adapter(platform, settings, self._transport, self._redactor)
        self._dispatchers[(platform, name)] = PlatformDispatcher(adapter, settings, self._metrics, name)
