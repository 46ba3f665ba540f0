"""W3C trace context: an input record's `traceparent` carried onto what its event causes.

Every delivery has one `TraceContext`: the input record's own, or a new one when the record has
none, so a platform request and its result record can always be joined by the same `traceparent`
(README "Traces"). Values from Kafka are checked strictly before they go anywhere near an HTTP
header: anything that is not a well-formed W3C value is dropped.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

#: Version 00 only: a later version may add fields this module cannot vouch for.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
#: The W3C limit on list members is 32; 512 characters is the length vendors must propagate.
TRACESTATE_MAX_LEN = 512
#: Keys and values as the W3C grammar allows them, members joined by commas (with optional spaces).
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_TRACESTATE = re.compile(
    rf"{_TRACESTATE_MEMBER.pattern}(?:[ \t]*,[ \t]*{_TRACESTATE_MEMBER.pattern}){{0,31}}"
)
#: Flag bit 0: the caller records this trace. New traces are sampled: nothing of ours samples
#: them out, and an unsampled trace would be dropped by any tracing backend the platforms run.
_SAMPLED = "01"


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    parent_id: str
    flags: str
    tracestate: str | None = None

    @classmethod
    def new(cls) -> TraceContext:
        """A new trace, for an event that came without one."""
        return cls(_random_hex(128), _random_hex(64), _SAMPLED)

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> TraceContext | None:
        """The trace a Kafka record's headers carry; None when they carry no valid `traceparent`."""
        parent: bytes | None = None
        state: bytes | None = None
        for name, value in headers:
            if name == TRACEPARENT:
                parent = value
            elif name == TRACESTATE:
                state = value
        if parent is None:
            return None
        context = cls.parse(parent, state)
        if context is None:
            log.debug("invalid traceparent ignored", extra={"fields": {"traceparent": repr(parent[:64])}})
        return context

    @classmethod
    def parse(cls, traceparent: bytes | str, tracestate: bytes | str | None = None) -> TraceContext | None:
        """A `traceparent` (and `tracestate`) checked against the W3C grammar; None when invalid.

        An invalid `tracestate` is dropped on its own: the trace it belongs to is still good.
        """
        text = _ascii(traceparent)
        match = _TRACEPARENT.fullmatch(text) if text is not None else None
        if match is None:
            return None
        trace_id, parent_id, flags = match.groups()
        if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
            return None
        return cls(trace_id, parent_id, flags, _valid_tracestate(tracestate))

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"

    def http_headers(self) -> tuple[tuple[str, str], ...]:
        if self.tracestate is None:
            return ((TRACEPARENT, self.traceparent),)
        return ((TRACEPARENT, self.traceparent), (TRACESTATE, self.tracestate))

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [(name, value.encode("ascii")) for name, value in self.http_headers()]


def carried_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The trace headers among a request's: for a further request the same delivery makes."""
    return tuple((name, value) for name, value in headers if name in (TRACEPARENT, TRACESTATE))


def _random_hex(bits: int) -> str:
    # Not a secret: ids only need to be unique, and `random` costs less than the OS's entropy.
    value = 0
    while not value:
        value = random.getrandbits(bits)
    return f"{value:0{bits // 4}x}"


def _ascii(value: bytes | str) -> str | None:
    if isinstance(value, str):
        return value if value.isascii() else None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def _valid_tracestate(value: bytes | str | None) -> str | None:
    if value is None or len(value) > TRACESTATE_MAX_LEN:
        return None
    text = _ascii(value)
    if text is None:
        return None
    text = text.strip(" \t")
    if not text or _TRACESTATE.fullmatch(text) is None:
        return None
    return text
