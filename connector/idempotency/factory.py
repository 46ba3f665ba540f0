"""Chooses the store backend from the URL scheme."""

from __future__ import annotations

from connector.errors import ConfigError
from connector.idempotency.base import IdempotencyStore


def open_store(url: str, timeout_s: float = 5.0) -> IdempotencyStore:
    """Build (not yet open) the store for `url`: `sqlite:///path`, `redis://…`, `postgresql://…`, `memory://`."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from connector.idempotency.memory import MemoryStore

        return MemoryStore()
    raise ConfigError(f"invalid configuration: idempotency.url: unsupported scheme {scheme!r}")
