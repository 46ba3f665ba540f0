from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.codec import decode_event, encode_result, fingerprint
from connector.errors import DlqReason, EventDecodeError, EventSchemaError, InvalidEventError
from connector.models import (
    ErrorCategory,
    OrderSyncResult,
    Outcome,
    Platform,
    ResultError,
    to_rfc3339,
    utc_now_rfc3339,
)
from tests.support.events import encode, make_event


def test_valid_event_decodes() -> None:
    event = decode_event(encode(make_event("ord-1", 3)))
    assert event.order.order_number == "ord-1"
    assert event.order.version == 3


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", DlqReason.DECODE),
        (b"{not json", DlqReason.DECODE),
        (b"\xff\xfe{}", DlqReason.DECODE),
        (b"[1, 2]", DlqReason.SCHEMA),
        (b'{"event_id": "x"}', DlqReason.SCHEMA),
        (b'{"a": 1, "a": 2}', DlqReason.DECODE),
        (b"[" * 100 + b"]" * 100, DlqReason.DECODE),
        (b" " * 2_000_000, DlqReason.DECODE),
    ],
)
def test_bad_values_are_classified(raw: bytes, reason: DlqReason) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_event(raw)
    assert caught.value.reason is reason


def test_unknown_schema_version_is_a_schema_error() -> None:
    event = make_event("ord-1", 1)
    event["schema_version"] = 2
    with pytest.raises(EventSchemaError, match="schema_version"):
        decode_event(encode(event))


def test_duplicate_key_inside_the_order_is_rejected() -> None:
    raw = encode(make_event("ord-1", 1)).replace(b'"version":1', b'"version":1,"version":2')
    with pytest.raises(EventDecodeError, match="duplicate"):
        decode_event(raw)


def test_fingerprint_ignores_key_order_but_not_content() -> None:
    event = make_event("ord-1", 1)
    reordered = dict(reversed(list(event.items())))
    assert fingerprint(decode_event(encode(event))) == fingerprint(decode_event(encode(reordered)))
    changed = make_event("ord-1", 1, event_id=event["event_id"])
    changed["order"]["shipping_address"]["city"] = "Elsewhere"
    assert fingerprint(decode_event(encode(event))) != fingerprint(decode_event(encode(changed)))


_results = st.builds(
    OrderSyncResult,
    result_id=st.text(max_size=40),
    event_id=st.text(max_size=40),
    order_number=st.text(max_size=40),
    order_version=st.integers(min_value=0, max_value=2**53),
    platform=st.sampled_from(Platform),
    outcome=st.sampled_from(Outcome),
    status_code=st.none() | st.integers(min_value=100, max_value=599),
    attempts=st.integers(min_value=0, max_value=100),
    duration_ms=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    error=st.none()
    | st.builds(
        ResultError,
        category=st.sampled_from(ErrorCategory),
        message=st.text(max_size=200),
        response_excerpt=st.none() | st.text(max_size=200),
    ),
    completed_at=st.text(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(_results)
def test_result_encoding_matches_the_models_own_dump(result: OrderSyncResult) -> None:
    # encode_result skips pydantic's walk; a field added to the model without it fails here.
    assert encode_result(result) == orjson.dumps(result.model_dump(mode="json"))


def test_now_in_rfc3339_is_utc_with_milliseconds() -> None:
    before = datetime.now(UTC)
    text = utc_now_rfc3339()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= moment <= after
    assert text == to_rfc3339(moment)
