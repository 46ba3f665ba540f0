"""Prometheus metrics (README "Operations runbook"). Label values are bounded and closed.

`connection` is one of the configured connections of the platform (README "Connections"): a name
an event gives is never a label value (a delivery to a connection that is not configured counts as
`_unknown`), so the label set grows with the configuration, not with the input.

Metrics live in one registry object so tests and the demo can run several connectors in one
process without colliding; `Metrics()` registers them, `render()` exposes them.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from connector.models import ErrorCategory


class EventResult(StrEnum):
    """`order_sync_events_total{result}`: whether an input message was a usable event."""

    VALID = "valid"
    INVALID = "invalid"


class IdempotencyHit(StrEnum):
    """`order_sync_idempotency_hits_total{kind}`: why the store kept a delivery from being sent."""

    #: Already reported (or done) for this `(event_id, platform)`.
    DUPLICATE = "duplicate"
    #: The platform already has this order at the same or a newer version.
    STALE = "stale"


class RetryWait(StrEnum):
    """`order_sync_retries_total{reason}` values that are not an `ErrorCategory` (the others are)."""

    #: A platform-wide throttle held every request; nobody was charged an attempt.
    THROTTLED = "throttled"
    #: The delivery ran out of attempts while the circuit was open, and waits for it instead.
    CIRCUIT_OPEN = "circuit_open"


#: `order_sync_retries_total{reason}`: an `ErrorCategory` or a `RetryWait`.
RetryReasonLabel = ErrorCategory | RetryWait

#: `order_sync_platform_requests_total{code}` when a request got no response.
NO_RESPONSE_CODE = "error"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "order_sync_events", "Input messages consumed, by validity.", ["result"], registry=r
        )
        self.deliveries = Counter(
            "order_sync_deliveries",
            "Deliveries that reached an outcome.",
            ["platform", "outcome", "connection"],
            registry=r,
        )
        self.platform_requests = Counter(
            "order_sync_platform_requests",
            "HTTP requests sent to platforms, by status code (`error` when no response).",
            ["platform", "code", "connection"],
            registry=r,
        )
        self.platform_request_seconds = Histogram(
            "order_sync_platform_request_seconds",
            "Duration of one platform request.",
            ["platform", "connection"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "order_sync_retries",
            "Retries scheduled, by reason.",
            ["platform", "reason", "connection"],
            registry=r,
        )
        self.inflight_deliveries = Gauge(
            "order_sync_inflight_deliveries",
            "Deliveries started and not yet reported.",
            ["platform", "connection"],
            registry=r,
        )
        self.inflight_events = Gauge(
            "order_sync_inflight_events",
            "Messages a pipeline consumed and has not completed.",
            ["pipeline"],
            registry=r,
        )
        self.idempotency_hits = Counter(
            "order_sync_idempotency_hits",
            "Deliveries not sent because the store knew them.",
            ["platform", "kind", "connection"],
            registry=r,
        )
        self.throttled_seconds = Counter(
            "order_sync_throttled_seconds",
            "Seconds every request to the platform was held by its platform-wide throttle.",
            ["platform", "connection"],
            registry=r,
        )
        self.held_deliveries = Gauge(
            "order_sync_held_deliveries",
            "Deliveries parked in the store while their connection is held, per connection"
            ' (README "Isolation between connections").',
            ["platform", "connection"],
            registry=r,
        )
        self.paused = Gauge(
            "order_sync_paused",
            "1 while an operator's pause holds the platform (connection `_all`) or one connection.",
            ["platform", "connection"],
            registry=r,
        )
        self.paused_since = Gauge(
            "order_sync_paused_since_seconds",
            "When the pause in force began (Unix time; 0 when not paused).",
            ["platform", "connection"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "order_sync_circuit_open",
            "1 while the platform's circuit is open or half-open.",
            ["platform", "connection"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "order_sync_consumer_lag",
            "End offset minus the pipeline's committed offset, per input partition it holds.",
            ["pipeline", "partition"],
            registry=r,
        )
        self.event_seconds = Histogram(
            "order_sync_event_seconds",
            "From consume by a platform's pipeline to the delivery's result acknowledged.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.dlq = Counter("order_sync_dlq", "Input messages sent to the DLQ.", ["reason"], registry=r)
        self.tombstones = Counter(
            "order_sync_tombstones", "Input messages with a null value (skipped).", registry=r
        )
        self.partitions_paused = Gauge(
            "order_sync_partitions_paused",
            "1 while the pipeline's fetching is paused (MAX_INFLIGHT_EVENTS reached, or the store down).",
            ["pipeline"],
            registry=r,
        )
        self.pauses = Counter(
            "order_sync_backpressure_pauses",
            "Times the pipeline's fetching was paused.",
            ["pipeline"],
            registry=r,
        )
        self.commits = Counter("order_sync_commits", "Offset commits made.", ["pipeline"], registry=r)
        self.store_up = Gauge("order_sync_store_up", "1 while the idempotency store answers.", registry=r)
        self.ready = Gauge("order_sync_ready", "1 while /readyz answers 200.", registry=r)
        self.background_task_failures = Counter(
            "order_sync_background_task_failures",
            'Background tasks that failed, by task (README "Background tasks").',
            ["task"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
