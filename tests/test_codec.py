from __future__ import annotations

import pytest

from connector.codec import decode_event, fingerprint
from connector.errors import DlqReason, EventDecodeError, EventSchemaError, InvalidEventError
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
