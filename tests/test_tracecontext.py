"""W3C trace context: what is accepted from Kafka, what is made, what goes out."""

from __future__ import annotations

import logging
import re

import pytest

from connector.observability.tracecontext import TRACESTATE_MAX_LEN, TraceContext, carried_headers

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def test_a_valid_traceparent_is_read_from_kafka_headers() -> None:
    context = TraceContext.from_headers([("event_id", b"e-1"), ("traceparent", VALID.encode())])
    assert context == TraceContext(TRACE_ID, PARENT_ID, "01", None)
    assert context.traceparent == VALID


def test_tracestate_is_kept_with_its_traceparent() -> None:
    state = b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE, vendor@sys=a b"
    context = TraceContext.from_headers([("tracestate", state), ("traceparent", VALID.encode())])
    assert context is not None
    assert context.tracestate == state.decode()
    assert context.http_headers() == (("traceparent", VALID), ("tracestate", state.decode()))
    assert context.kafka_headers() == [("traceparent", VALID.encode()), ("tracestate", state)]


def test_no_traceparent_means_no_context_even_with_a_tracestate() -> None:
    assert TraceContext.from_headers([]) is None
    assert TraceContext.from_headers([("tracestate", b"rojo=1")]) is None


@pytest.mark.parametrize(
    "value",
    [
        f"01-{TRACE_ID}-{PARENT_ID}-01",  # a version this module cannot vouch for
        f"ff-{TRACE_ID}-{PARENT_ID}-01",
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper case is not W3C
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-1",
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
        f" {VALID}",
        f"{VALID}\r\nX-Injected: 1",
        f"{VALID}\n",
        "",
        "not a traceparent",
    ],
)
def test_an_invalid_traceparent_counts_as_absent(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="connector.observability.tracecontext"):
        assert TraceContext.from_headers([("traceparent", value.encode())]) is None
    assert any(r.getMessage() == "invalid traceparent ignored" for r in caplog.records)


def test_non_ascii_traceparent_counts_as_absent() -> None:
    assert TraceContext.from_headers([("traceparent", VALID.encode() + b"\xff")]) is None
    assert TraceContext.parse("00-" + "é" * 32 + f"-{PARENT_ID}-01") is None


@pytest.mark.parametrize(
    "state",
    [
        b"rojo=1\r\nX-Injected: 1",
        b"rojo=1\nb=2",
        b"Rojo=1",  # keys are lower case
        b"rojo",
        b"rojo=",
        b"=1",
        b"rojo=a,b",  # a comma ends a member; "b" is not one
        b"rojo=a=b",
        "rojo=caf\u00e9".encode(),
        b"rojo=\xff",
        b"a=" + b"x" * TRACESTATE_MAX_LEN,  # over the length cap
        b",".join(b"k%d=v" % n for n in range(33)),  # more than 32 members
    ],
)
def test_an_invalid_tracestate_is_dropped_and_the_trace_kept(state: bytes) -> None:
    context = TraceContext.from_headers([("traceparent", VALID.encode()), ("tracestate", state)])
    assert context is not None
    assert context.tracestate is None
    assert context.http_headers() == (("traceparent", VALID),)


def test_a_tracestate_at_the_length_cap_is_kept() -> None:
    members = b",".join([b"a=" + b"x" * 250, b"b=" + b"y" * 250, b"c=" + b"z" * 4])
    assert len(members) == TRACESTATE_MAX_LEN
    context = TraceContext.parse(VALID, members)
    assert context is not None and context.tracestate == members.decode()
    assert TraceContext.parse(VALID, members + b"z") == TraceContext(TRACE_ID, PARENT_ID, "01", None)


def test_a_member_value_longer_than_256_characters_is_dropped() -> None:
    assert TraceContext.parse(VALID, b"a=" + b"x" * 256) == TraceContext(
        TRACE_ID, PARENT_ID, "01", "a=" + "x" * 256
    )
    assert TraceContext.parse(VALID, b"a=" + b"x" * 257) == TraceContext(TRACE_ID, PARENT_ID, "01", None)


def test_new_contexts_are_valid_sampled_and_distinct() -> None:
    made = [TraceContext.new() for _ in range(200)]
    for context in made:
        assert _TRACEPARENT.fullmatch(context.traceparent)
        assert context.flags == "01"
        assert context.tracestate is None
        assert TraceContext.parse(context.traceparent) == context
    assert len({c.trace_id for c in made}) == 200
    assert len({c.parent_id for c in made}) == 200


def test_carried_headers_are_only_the_trace_headers() -> None:
    headers = (("Content-Type", "application/json"), ("traceparent", VALID), ("tracestate", "a=1"))
    assert carried_headers(headers) == (("traceparent", VALID), ("tracestate", "a=1"))
    assert carried_headers((("Accept", "application/json"),)) == ()
