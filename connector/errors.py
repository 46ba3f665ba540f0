"""The connector's error tree. Each class says what it means and whether retrying can help.

Foreign exceptions (aiohttp, aiokafka, database drivers) are translated into these at the
boundary where they arise; code above the boundaries only sees this tree.

What is retryable: an error that carries no answer says so itself (`retryable`, asked as aiokafka
asks its errors' `retriable`); what a platform's answer means, retryable or not, is that platform's
adapter's to say (`PlatformAdapter.classify` in `platforms/base.py`, token endpoints included).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import ClassVar


class OrderSyncError(Exception):
    """Root of every error the connector raises on purpose."""

    #: Whether the same operation may succeed if tried again later.
    retryable: ClassVar[bool] = False


class ConfigError(OrderSyncError):
    """The configuration is invalid; the connector cannot start."""


class DlqReason(StrEnum):
    """Why an input message went to the DLQ (`error.reason` header)."""

    DECODE = "decode"
    SCHEMA = "schema"
    CONFLICT = "conflict"


class InvalidEventError(OrderSyncError):
    """An input message is not a usable canonical event; it goes to the DLQ."""

    reason: ClassVar[DlqReason]


class EventDecodeError(InvalidEventError):
    """The value is not UTF-8 JSON (or is too large or too deep to be one event)."""

    reason = DlqReason.DECODE


class EventSchemaError(InvalidEventError):
    """The value is JSON but not a valid canonical event."""

    reason = DlqReason.SCHEMA


class EventConflictError(InvalidEventError):
    """An event_id seen before arrived with different content."""

    reason = DlqReason.CONFLICT


class UnmappableError(OrderSyncError):
    """The event lacks what a platform needs; no request can be built."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class StoreUnavailableError(OrderSyncError):
    """The idempotency store did not answer; work waits until it does."""

    retryable = True


class KafkaReadError(OrderSyncError):
    """Kafka cannot be read (unreachable, refused, or a topic is missing); a command cannot answer."""


class KafkaUnavailableError(OrderSyncError):
    """Kafka cannot be reached, or refused a command's request; the command cannot do its work."""


class ToolUnavailableError(OrderSyncError):
    """A development tool (the embedded broker, a simulator's port) cannot be used; the command stops."""


class TransportError(OrderSyncError):
    """A request did not produce an HTTP response."""

    retryable = True


class PlatformTimeoutError(TransportError):
    """No response within the platform's TIMEOUT_S."""


class PlatformConnectionError(TransportError):
    """The connection failed or dropped before a response arrived."""


class AuthFlowError(OrderSyncError):
    """A token endpoint answered an error status; the platform's adapter decides whether retrying helps."""

    def __init__(self, message: str, status_code: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers
        self.body = body


class AuthFlowUnavailableError(TransportError):
    """A token endpoint gave no answer, or no readable token (a timeout, a proxy's error page)."""
