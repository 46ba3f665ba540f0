"""The AsyncAPI 3.0 document of what the connector consumes and produces (`schemas/asyncapi.yaml`).

Channels carry the default topic names; each names the setting that changes it. Message payloads
refer to the JSON Schemas written beside this document, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import yaml

from connector.control.records import ControlRecord
from connector.errors import DlqReason
from connector.models import Outcome, Source

NAME = "asyncapi.yaml"
EVENT_SCHEMA = "order-changed.v1.json"
RESULT_SCHEMA = "order-sync-result.v1.json"
_KAFKA_BINDING_VERSION = "0.5.0"


def _version() -> str:
    try:
        return version("order-sync-connector")
    except PackageNotFoundError:
        return "0.0.0"


def _text(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


_TRACEPARENT_PATTERN = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_INPUT_TRACE_HEADERS = {
    "traceparent": _text(
        "W3C Trace Context `traceparent`; optional. When valid (version `00`), its trace is carried "
        "onto every platform request the event causes, its result records and its DLQ copies; an "
        "invalid one is ignored."
    ),
    "tracestate": _text(
        "W3C Trace Context `tracestate`; optional, carried with a valid `traceparent`. Dropped when "
        "longer than 512 characters or not in the W3C grammar."
    ),
}
_RESULT_TRACE_HEADERS = {
    "traceparent": _text(
        "The `traceparent` the delivery's platform requests carried: the input's, unchanged, or a new "
        "trace of this delivery when the input had no valid one.",
        pattern=_TRACEPARENT_PATTERN,
    ),
    "tracestate": _text("The input's `tracestate`, when it had a valid one."),
}
_DLQ_TRACE_HEADERS = {
    "traceparent": _text(
        "The input record's `traceparent`, unchanged, when it had a valid one.", pattern=_TRACEPARENT_PATTERN
    ),
    "tracestate": _text("The input record's `tracestate`, when it had a valid one."),
}

# The names `Source.headers()` writes, so the document cannot drift from the records.
_SOURCE_HEADERS = {
    name: _text(description, **({} if name == "source.topic" else {"pattern": "^[0-9]+$"}))
    for (name, _), description in zip(
        Source("", 0, 0).headers(),
        (
            "The input topic of the record this one comes from.",
            "Its partition, in decimal.",
            "Its offset, in decimal.",
        ),
        strict=True,
    )
}


def _listed(outcomes: Iterable[Outcome]) -> str:
    return ", ".join(f"`{o.value}`" for o in outcomes)


def _key(description: str) -> dict[str, Any]:
    return {"kafka": {"key": _text(description), "bindingVersion": _KAFKA_BINDING_VERSION}}


def _messages() -> dict[str, Any]:
    return {
        "orderChanged": {
            "name": "order.changed",
            "title": "Order changed",
            "summary": "One change of an order in the OMS, to push to every platform in `targets`.",
            "contentType": "application/json",
            "headers": {"type": "object", "properties": dict(_INPUT_TRACE_HEADERS)},
            "payload": {"$ref": f"./{EVENT_SCHEMA}"},
            "bindings": _key(
                "`order.order_number`, UTF-8. Any partitioner may be used; all versions of an order "
                "must land in one partition."
            ),
        },
        "syncResult": {
            "name": "order-sync.result",
            "title": "Delivery result",
            "summary": "The outcome of one delivery (one event to one platform).",
            "description": (
                f"{_listed(o for o in Outcome if o.succeeded)} go to the success topic; "
                f"{_listed(o for o in Outcome if not o.succeeded)} to the failure topic, with `error`. "
                "Published at least once: consumers deduplicate by `result_id`."
            ),
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "required": ["event_id", *_SOURCE_HEADERS],
                "properties": {
                    "event_id": _text("The input event's `event_id`."),
                    **_SOURCE_HEADERS,
                    **_RESULT_TRACE_HEADERS,
                },
            },
            "payload": {"$ref": f"./{RESULT_SCHEMA}"},
            "bindings": _key("The order number, UTF-8 (aiokafka's default partitioner, murmur2)."),
        },
        "deadLetter": {
            "name": "order-sync.dead-letter",
            "title": "Dead letter",
            "summary": "An input record that is not a usable event, copied byte for byte.",
            "description": (
                "The value is the input record's value as received (it may be anything, or absent "
                "when the copy was too large: then `error.value_dropped` gives its size)."
            ),
            "headers": {
                "type": "object",
                "required": ["error.reason", "error.message", *_SOURCE_HEADERS],
                "properties": {
                    "error.reason": _text("Why.", enum=[reason.value for reason in DlqReason]),
                    "error.message": _text("What was wrong, at most 1 KiB."),
                    "error.value_dropped": _text(
                        "Set when the value was left out: its size in bytes.", pattern="^[0-9]+$"
                    ),
                    **_SOURCE_HEADERS,
                    **_DLQ_TRACE_HEADERS,
                },
            },
            "contentType": "application/octet-stream",
            "payload": {"description": "The original value, unchanged."},
            "bindings": _key("The input record's key, unchanged (murmur2 partitioner)."),
        },
        "controlRecord": {
            "name": "order-sync.control",
            "title": "Pause or resume",
            "summary": "An operator's pause or resume of a platform or one of its connections.",
            "description": (
                "Written by `order-sync pause` and `order-sync resume`; the topic is compacted, so per "
                "target only the newest counts. Every replica reads it from its beginning. A record "
                "that does not parse, or names no known platform, is logged and ignored."
            ),
            "contentType": "application/json",
            "payload": _inlined(ControlRecord.model_json_schema()),
            "bindings": _key("The target: `platform` or `platform/connection`."),
        },
        "statusRecord": {
            "name": "order-sync.status",
            "title": "Replica status",
            "summary": "One replica's pipelines, partitions, lag, in-flight work, pauses and connections.",
            "description": (
                "Published every `ORDER_SYNC_KAFKA__STATUS_INTERVAL_S` and on every pause change; the "
                "topic is compacted (newest per replica). The same document is served at `/status`. "
                "A replica silent for three intervals is gone. It holds no secret."
            ),
            "contentType": "application/json",
            "payload": {
                "type": "object",
                "required": ["replica", "version", "started_at", "published_at", "interval_s", "pipelines"],
            },
            "bindings": _key("The replica's id (host, process and a random part)."),
        },
    }


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON Schema with its `$defs` written in place: no reference into a document
    the schema is not the root of."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


def _channel(address: str, setting: str, message: str, description: str) -> dict[str, Any]:
    return {
        "address": address,
        "description": f"{description} Topic set by `{setting}`.",
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
    }


def document() -> dict[str, Any]:
    channels = {
        "orderChanged": _channel(
            "orders.changed",
            "ORDER_SYNC_KAFKA__INPUT_TOPIC",
            "orderChanged",
            "Canonical order changes from the OMS.",
        ),
        "syncSucceeded": _channel(
            "orders.sync.succeeded",
            "ORDER_SYNC_KAFKA__SUCCESS_TOPIC",
            "syncResult",
            "Results of deliveries that succeeded.",
        ),
        "syncFailed": _channel(
            "orders.sync.failed",
            "ORDER_SYNC_KAFKA__FAILURE_TOPIC",
            "syncResult",
            "Results of deliveries that failed.",
        ),
        "deadLetters": _channel(
            "orders.changed.dlq",
            "ORDER_SYNC_KAFKA__DLQ_TOPIC",
            "deadLetter",
            "Input records that are not valid events (decode, schema) or reuse an event_id (conflict).",
        ),
        "control": _channel(
            "orders.sync.control",
            "ORDER_SYNC_KAFKA__CONTROL_TOPIC",
            "controlRecord",
            "Operators' pauses and resumes (compacted).",
        ),
        "status": _channel(
            "orders.sync.status",
            "ORDER_SYNC_KAFKA__STATUS_TOPIC",
            "statusRecord",
            "Each replica's status (compacted).",
        ),
    }

    def operation(action: str, channel: str, summary: str) -> dict[str, Any]:
        message = next(iter(channels[channel]["messages"]))
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "order-sync",
            "version": _version(),
            "description": (
                "Pushes canonical order changes from Kafka to commerce platforms and reports each "
                "delivery. Generated by `order-sync schemas`; see the README."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "Set by `ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS`.",
            }
        },
        "channels": channels,
        "operations": {
            "consumeOrderChanged": operation("receive", "orderChanged", "Each change, to every target."),
            "publishSucceeded": operation("send", "syncSucceeded", "One result per successful delivery."),
            "publishFailed": operation("send", "syncFailed", "One result per failed delivery."),
            "publishDeadLetter": operation("send", "deadLetters", "One copy per unusable record."),
            "consumeControl": operation("receive", "control", "Every pause and resume, by every replica."),
            "publishStatus": operation("send", "status", "Each replica's status, every few seconds."),
        },
        "components": {"messages": _messages()},
    }


class _Dumper(yaml.SafeDumper):
    # Shared header schemas are written out in full at each use: no YAML anchors for readers to chase.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> bytes:
    text = yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return text.encode("utf-8")
