"""Fuzzing the path hostile input takes: decode, plan, build each platform's request.

Whatever bytes arrive, `decode_event` either returns an event or raises `InvalidEventError`
with a `DlqReason`; an accepted event can be planned, fingerprinted, and mapped to every
platform's request (or refused with `UnmappableError`) without any other exception.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connector.codec import MAX_DEPTH, decode_event, encode_result, fingerprint
from connector.config import PlatformsSettings
from connector.errors import DlqReason, InvalidEventError, UnmappableError
from connector.models import OrderChangedEvent, OrderSyncResult, Outcome, Platform
from connector.observability.redaction import Redactor
from connector.platforms.base import PlatformAdapter
from connector.platforms.http import PlatformRequest
from connector.platforms.registry import build_adapter
from connector.platforms.transport import Transport
from tests.support.events import make_event

GOLDEN_EVENTS = Path(__file__).parent / "golden" / "events"

SETTINGS = PlatformsSettings.model_validate(
    {
        "vucustom": {"base_url": "https://vu.example", "api_key": "fuzz-key", "api_secret": "fuzz-secret"},
        "sellercloud": {"base_url": "https://sc.example/rest", "username": "u", "password": "fuzz-pass"},
        "elasticpath": {"base_url": "https://ep.example", "client_id": "c", "client_secret": "fuzz-cs"},
        "ventmere": {"base_url": "https://vm.example", "api_token": "fuzz-token", "organization_id": "org"},
    }
)
#: build_request is pure: the transport is never used.
ADAPTERS: dict[Platform, PlatformAdapter] = {
    platform: build_adapter(platform, SETTINGS.get(platform), Transport(), Redactor())
    for platform in Platform
}

ALL_TARGETS: dict[str, dict[str, Any]] = {
    "vucustom": {"id": 432},
    "sellercloud": {"order_id": 5012345, "company_id": 12},
    "elasticpath": {"order_id": "6c5a6f8e-41f6-4b4e-9d38-3f0f0b4a6a11"},
    "ventmere": {"order_id": "ae52b0ab", "account_id": "1ac48942-405a-4841-a7d8-708f50dbe1ad"},
}

SEEDS: list[dict[str, Any]] = [
    make_event("ord-fuzz", 3, ALL_TARGETS, event_id="e-fuzz"),
    *(orjson.loads(path.read_bytes()) for path in sorted(GOLDEN_EVENTS.glob("*.json"))),
]

FUZZ = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)


def check(raw: bytes | None) -> OrderChangedEvent | None:
    """The property: only InvalidEventError escapes decoding; accepted events plan and map cleanly."""
    try:
        event = decode_event(raw)
    except InvalidEventError as exc:
        assert exc.reason in (DlqReason.DECODE, DlqReason.SCHEMA), exc.reason
        assert str(exc)
        return None
    planned = event.targets.platforms()
    assert all(event.targets.includes(p) == (p in planned) for p in Platform)
    # What the consumer does with every accepted event before and after its deliveries.
    assert len(fingerprint(event)) == 64
    for platform in planned:
        adapter = ADAPTERS[platform]
        try:
            request = adapter.build_request(event)
        except UnmappableError as exc:
            assert exc.field
            outcome, attempts = Outcome.UNMAPPABLE, 0
        else:
            assert isinstance(request, PlatformRequest)
            assert request.method == "PUT"
            assert request.url.startswith(adapter.base_url + "/"), request.url
            assert isinstance(request.body, bytes)
            orjson.loads(request.body)
            outcome, attempts = Outcome.APPLIED, 1
        result = OrderSyncResult(
            result_id=OrderSyncResult.result_id_for(event.event_id, platform),
            event_id=event.event_id,
            order_number=event.order.order_number,
            order_version=event.order.version,
            platform=platform,
            outcome=outcome,
            status_code=None,
            attempts=attempts,
            duration_ms=0.0,
            error=None,
            completed_at="2024-01-02T07:26:41.402Z",
        )
        encode_result(result)
    return event


def test_the_seeds_are_accepted() -> None:
    for seed in SEEDS:
        assert check(orjson.dumps(seed)) is not None


# --- raw bytes -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """A valid event's bytes with a few byte-level edits: flips, cuts, insertions, repeats."""
    raw = bytearray(orjson.dumps(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 6))):
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        kind = draw(st.sampled_from(["flip", "delete", "insert", "repeat", "truncate", "hostile"]))
        if kind == "flip":
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 16))]
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "repeat":
            raw[at:at] = raw[at : at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del raw[at:]
        else:
            raw[at:at] = draw(
                st.sampled_from(
                    [
                        b"\xff",
                        b"\xc3\x28",
                        b"\xed\xa0\x80",
                        b"\\ud800",
                        b"\x00",
                        b"null",
                        b"1e400",
                        b"-",
                        b"{",
                    ]
                )
            )
    return bytes(raw)


@FUZZ
@given(mutated_bytes())
def test_mutated_valid_events(raw: bytes) -> None:
    check(raw)


# --- structure: wrong types, nulls, huge values, unknown versions ---------------------------------

huge_ints = st.sampled_from(
    [2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -(2**63) - 1, -1, -(10**30)]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(min_size=4000, max_size=5000),
    st.sampled_from(
        [
            "",
            "2024-01-02T07:26:41.193Z",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2024-02-30T00:00:00Z",
            "9.99",
            "-0",
            "1e400",
            "US",
            "open",
            "fulfilled",
            "order.changed",
            "../../admin",
            "a/b?c=d#e",
            "%2e%2e",
            "\u202e\u0000\ud7ff",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*prefix, index)))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> None:
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    """A valid event with values replaced by wrong types, nulls and huge values, keys removed or added."""
    document = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "version"]))
        try:
            if action == "replace":
                _set(document, path, draw(json_values))
            elif action == "delete":
                _set(document, path, None, delete=True)
            elif action == "add":
                parent = document
                for part in path[:-1]:
                    parent = parent[part]
                if isinstance(parent, dict):
                    parent[draw(st.text(max_size=12))] = draw(json_values)
            else:
                document["schema_version"] = draw(
                    st.one_of(st.integers(-5, 5), huge_ints, st.just("1"), st.just(1.0), st.none())
                )
        except (KeyError, IndexError, TypeError):
            continue
    # The stdlib encoder, unlike orjson, writes integers beyond 64 bits as hostile producers may.
    return json.dumps(document, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@FUZZ
@given(mutated_documents())
def test_wrong_types_nulls_and_huge_values(raw: bytes) -> None:
    check(raw)


TIME_FIELDS = [
    ("occurred_at",),
    ("order", "order_date"),
    ("order", "ship_by_date"),
    ("order", "deliver_by_date"),
    ("order", "lines", 0, "requested_date"),
]


@st.composite
def rfc3339_at_the_edges(draw: st.DrawFn) -> str:
    """Timestamps near year 1 and year 9999 with any UTC offset an RFC 3339 string can carry."""
    moment = draw(
        st.one_of(
            st.datetimes(),
            st.datetimes(max_value=datetime(1, 1, 2)),
            st.datetimes(min_value=datetime(9999, 12, 30)),
        )
    )
    offset = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    sign = "-" if offset < 0 else "+"
    zone = draw(st.sampled_from([f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}", "Z"]))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + zone


@FUZZ
@given(st.sampled_from(SEEDS), st.sampled_from(TIME_FIELDS), rfc3339_at_the_edges())
@example(SEEDS[0], ("order", "order_date"), "9999-12-31T23:59:59-23:59")
@example(SEEDS[0], ("occurred_at",), "0001-01-01T00:00:00+00:01")
def test_timestamps_at_the_edges_of_the_calendar(
    seed: dict[str, Any], path: tuple[Any, ...], stamp: str
) -> None:
    document = copy.deepcopy(seed)
    try:
        _set(document, path, stamp)
    except (KeyError, IndexError, TypeError):
        return
    check(orjson.dumps(document))


@settings(FUZZ, max_examples=300)
@given(
    st.sampled_from(SEEDS),
    st.integers(1, 3 * MAX_DEPTH),
    st.sampled_from(["[", "{"]),
    st.sampled_from(["order.attributes", "order.lines.0.attributes", "targets", "root"]),
)
def test_deep_nesting(seed: dict[str, Any], depth: int, opener: str, where: str) -> None:
    nested: Any = "leaf"
    for _ in range(depth):
        nested = [nested] if opener == "[" else {"k": nested}
    document = copy.deepcopy(seed)
    if where == "root":
        document = nested
    else:
        target: Any = document
        *parents, last = where.split(".")
        try:
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            target[last] = nested
        except (KeyError, IndexError):
            return
    raw = json.dumps(document).encode()
    event = check(raw)
    # The level of the outermost nested container's parent: root is level 1.
    above = {"root": 0, "targets": 1, "order.attributes": 2, "order.lines.0.attributes": 4}[where]
    if above + depth > MAX_DEPTH:
        assert event is None, f"{above + depth} levels accepted"


@st.composite
def duplicated_keys(draw: st.DrawFn) -> bytes:
    """A valid event's text with one object key spelled twice (same or other value)."""
    raw = orjson.dumps(draw(st.sampled_from(SEEDS))).decode()
    keys = [i for i in range(len(raw)) if raw.startswith('":', i)]
    end = draw(st.sampled_from(keys))
    start = raw.rindex('"', 0, end)
    key = raw[start : end + 1]
    value = draw(st.sampled_from(["null", "1", '"x"', "{}", "[]"]))
    raw = raw[: end + 2] + value + "," + key + ":" + raw[end + 2 :]
    return raw.encode()


@settings(FUZZ, max_examples=500)
@given(duplicated_keys())
def test_duplicate_keys_are_refused(raw: bytes) -> None:
    assert check(raw) is None


@settings(FUZZ, max_examples=300)
@given(st.sampled_from(SEEDS), st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b)))
def test_invalid_utf8_inside_a_string_is_a_decode_error(seed: dict[str, Any], junk: bytes) -> None:
    raw = orjson.dumps(seed).replace(b'"order_number":"', b'"order_number":"' + junk.replace(b'"', b"x"), 1)
    try:
        decode_event(raw)
    except InvalidEventError as exc:
        assert exc.reason is DlqReason.DECODE
    else:
        raise AssertionError(f"invalid UTF-8 {junk!r} accepted")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.replace(b'"', b"x").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(FUZZ, max_examples=200)
@given(st.sampled_from(SEEDS), st.one_of(st.integers(), huge_ints, st.text(max_size=3), st.none()))
def test_unknown_schema_version_is_a_schema_error(seed: dict[str, Any], version: Any) -> None:
    document = {**seed, "schema_version": version}
    raw = json.dumps(document).encode()
    event = check(raw)
    if version != 1:
        assert event is None


def test_null_and_oversize_values_are_decode_errors() -> None:
    big = orjson.dumps({**SEEDS[0], "pad": "x" * 1_100_000})
    for raw in (None, b"", b"   ", big):
        try:
            decode_event(raw)
        except InvalidEventError as exc:
            assert exc.reason is DlqReason.DECODE
        else:
            raise AssertionError("accepted")
