"""Bytes to events and results to bytes. Decoding is where hostile input stops."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from connector.errors import EventDecodeError, EventSchemaError
from connector.models import OrderChangedEvent, OrderSyncResult

DEFAULT_MAX_BYTES = 1_048_576
#: Canonical events are at most a few levels deep; anything deeper is not one.
MAX_DEPTH = 32


def _object_keys(document: Any, limit: int) -> int | None:
    """How many object keys a parsed document holds in all; None when it nests deeper than `limit`.

    One pass for both checks (this runs for every input message). `document` comes from orjson,
    whose containers are exactly `dict` and `list`.
    """
    keys = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > limit:
            return None
        if type(node) is dict:
            keys += len(node)
            children: Any = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        depth += 1
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth))
    return keys


_STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"[ \t\r\n]*(:?)')


def _key_tokens(raw: bytes) -> int:
    """How many object keys the raw JSON spells out (every string token followed by a colon)."""
    # findall yields the colon group per string token: b":" after a key, b"" after a value.
    return _STRING_TOKEN.findall(raw).count(b":")


def decode_event(raw: bytes | None, max_bytes: int = DEFAULT_MAX_BYTES) -> OrderChangedEvent:
    """Parse one input value; raise `EventDecodeError` or `EventSchemaError` saying why not."""
    if raw is None:
        raise EventDecodeError("null value")
    if len(raw) > max_bytes:
        raise EventDecodeError(f"value of {len(raw)} bytes exceeds {max_bytes}")
    if not raw.strip():
        raise EventDecodeError("empty value")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"not UTF-8 JSON: {exc}") from exc
    keys = _object_keys(document, MAX_DEPTH)
    if keys is None:
        raise EventDecodeError(f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(document, dict):
        raise EventSchemaError(f"expected a JSON object, got {type(document).__name__}")
    # orjson keeps the last of duplicate keys silently; an event with two values for one key is ambiguous.
    if _key_tokens(raw) != keys:
        raise EventDecodeError("duplicate keys in a JSON object")
    try:
        event = OrderChangedEvent.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "event"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise EventSchemaError(f"{where}: {first['msg']}{more}") from exc
    # Times are sent in UTC; one that leaves the calendar once converted (9999-12-31T23:00-05:00)
    # would fail every mapping with OverflowError instead of going to the DLQ.
    if _may_leave_calendar(raw) and (field := _time_beyond_utc(event, "")) is not None:
        raise EventSchemaError(f"{field}: time out of range once converted to UTC")
    return event


def decode_accepted(raw: bytes) -> OrderChangedEvent:
    """Parse bytes that `decode_event` accepted before: the same event, without the hostile-input
    checks that already passed for these exact bytes (the pipelines' screening remembers which)."""
    return OrderChangedEvent.model_validate(orjson.loads(raw))


def _may_leave_calendar(raw: bytes) -> bool:
    """False when no time in `raw` can be in year 1 or 9999 (the only ones UTC conversion can leave).

    Times are parsed only from `YYYY-…` strings (numbers are UTC timestamps), so such a year is
    spelled out in the raw bytes, or hidden behind a `\\u` escape. Walking the model costs more than
    decoding it; this spares the walk for almost every event.
    """
    return b"9999" in raw or b"0001" in raw or b"\\u" in raw


def _time_beyond_utc(value: Any, where: str) -> str | None:
    """The path of the first datetime in a validated model that has no UTC equivalent, if any."""
    if isinstance(value, datetime):
        try:
            value.astimezone(UTC)
        except OverflowError:
            return where
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            if (found := _time_beyond_utc(getattr(value, name), f"{where}.{name}".lstrip("."))) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, BaseModel) and (found := _time_beyond_utc(item, f"{where}.{index}")):
                return found
    return None


def fingerprint(event: OrderChangedEvent) -> str:
    """A digest of the event's content, stable across key order and whitespace."""
    canonical = orjson.dumps(event.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def encode_result(result: OrderSyncResult) -> bytes:
    """`orjson.dumps(result.model_dump(mode="json"))`, without pydantic's walk (once per delivery);
    tests/test_codec.py holds the two equal."""
    error = result.error
    return orjson.dumps(
        {
            "result_id": result.result_id,
            "event_id": result.event_id,
            "order_number": result.order_number,
            "order_version": result.order_version,
            "platform": result.platform,
            "outcome": result.outcome,
            "connection": result.connection,
            "status_code": result.status_code,
            "attempts": result.attempts,
            "duration_ms": result.duration_ms,
            "error": None
            if error is None
            else {
                "category": error.category,
                "message": error.message,
                "response_excerpt": error.response_excerpt,
            },
            "completed_at": result.completed_at,
        }
    )
