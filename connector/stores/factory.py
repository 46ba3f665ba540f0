"""Chooses the store backend from the URL scheme."""

from __future__ import annotations

from connector.errors import ConfigError
from connector.stores.base import IdempotencyStore

_SCHEMES = "sqlite:///path, redis://, rediss://, postgresql://, postgres://, memory://"


def open_store(url: str, timeout_s: float = 5.0, *, retention_hours: float = 168.0) -> IdempotencyStore:
    """Build (not yet open) the store for `url`.

    `sqlite:///relative/path` or `sqlite:////absolute/path`, `redis://…` or `rediss://…` (TLS),
    `postgresql://…` or `postgres://…`, `memory://`. `retention_hours` is used by backends that
    expire records themselves (Redis); the others are trimmed by `purge`. Errors never quote the
    URL, which may hold a password.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "memory":
        from connector.stores.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from connector.stores.sqlite import SqliteStore

        return SqliteStore(_sqlite_path(url), timeout_s=timeout_s)
    if scheme in ("redis", "rediss"):
        from connector.stores.redis import RedisStore

        return RedisStore(url, timeout_s=timeout_s, retention_s=retention_hours * 3600)
    if scheme in ("postgresql", "postgres"):
        from connector.stores.postgres import PostgresStore

        return PostgresStore(url, timeout_s=timeout_s)
    raise ConfigError(
        f"invalid configuration: idempotency.url: unsupported scheme {scheme!r} (expected {_SCHEMES})"
    )


def _sqlite_path(url: str) -> str:
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix):
        raise ConfigError(
            "invalid configuration: idempotency.url: a SQLite URL is sqlite:///relative/path "
            "or sqlite:////absolute/path"
        )
    path = url[len(prefix) :]
    if not path or path.endswith("/"):
        raise ConfigError("invalid configuration: idempotency.url: the SQLite URL names no file")
    return path
