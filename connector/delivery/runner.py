"""One delivery, end to end: request built, idempotency claim, request sent (or not), outcome
recorded, result published.

Every path ends in a published result, except a delivery the store has already reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import orjson
from prometheus_client import Counter, Gauge

from connector.codec import decode_event, encode_result
from connector.delivery.connections import ConnectionRegistry
from connector.delivery.dispatcher import UNGATED, ConnectionHeld, DeliveryReport, Turn
from connector.errors import UnmappableError
from connector.kafka.publisher import Publisher
from connector.models import (
    ErrorCategory,
    OrderChangedEvent,
    OrderSyncResult,
    Outcome,
    Platform,
    ResultError,
    Source,
    utc_now_rfc3339,
)
from connector.observability.metrics import IdempotencyHit, Metrics
from connector.observability.tracecontext import TraceContext
from connector.platforms.http import PlatformRequest
from connector.policies.backoff import Backoff
from connector.stores import Claim, ClaimStatus, DeliveryKey, ParkedDelivery
from connector.stores.batching import StoreBatcher
from connector.stores.guard import StoreGuard

log = logging.getLogger(__name__)

#: Claims (new work) at the store at once. Outcomes are not limited: each closes a request already
#: sent, and until it is stored a hard kill repeats that request. With claims unlimited, a busy store
#: queues the claims of every waiting delivery ahead of the outcomes, and hundreds of answered
#: requests stay unrecorded (all repeated after a kill).
CONCURRENT_CLAIMS = 32


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one platform, ready to go: what the store knows it by, and its request (or why
    there is none). An in-flight delivery holds this, a few hundred bytes, not the decoded event."""

    key: DeliveryKey
    request: PlatformRequest | None
    unmappable: ResultError | None
    source: Source
    #: The input record's trace, or one made for this delivery: its requests and result carry it.
    trace: TraceContext
    #: Asked before each request: send, wait or park, superseded? Given by the connection's gate.
    turn: Turn = UNGATED


class DeliveryRunner:
    def __init__(
        self,
        connections: ConnectionRegistry,
        guard: StoreGuard,
        publisher: Publisher,
        metrics: Metrics,
        owner: str,
        claim_lease_s: float,
    ) -> None:
        self.connections = connections
        self._guard = guard
        self._store = guard.store
        self._batch = StoreBatcher(guard.store, owner, claim_lease_s)
        self._publisher = publisher
        self._metrics = metrics
        self._owner = owner
        self._claiming = asyncio.Semaphore(CONCURRENT_CLAIMS)
        # Metric children by label values, made on first use (a `labels()` lookup costs more than the
        # increment); one set per connection that has seen a delivery, not per connection configured.
        self._inflight: dict[tuple[Platform, str], Gauge] = {}
        self._delivered: dict[tuple[Platform, str, Outcome], Counter] = {}
        self._label_of = connections.label_of

    def prepare(
        self,
        event: OrderChangedEvent,
        platform: Platform,
        source: Source,
        trace: TraceContext | None,
        turn: Turn = UNGATED,
    ) -> Delivery:
        """The delivery of `event` to `platform`, its request built now (pure, no I/O), asking `turn`
        before each request. `trace` is the input record's, when it carried a valid one (README
        "Traces")."""
        order = event.order
        connection = event.targets.connection_of(platform)
        key = DeliveryKey(event.event_id, platform, order.order_number, order.version, connection)
        # The input's traceparent goes on unchanged (W3C pass-through: no spans are recorded here);
        # without one, a trace per delivery joins its requests and its result.
        trace = trace if trace is not None else TraceContext.new()
        dispatcher = self.connections.dispatcher(platform, connection)
        if dispatcher is None:
            return Delivery(key, None, _not_configured(key), source, trace, turn)
        try:
            request = dispatcher.adapter.build_request(event)
        except UnmappableError as exc:
            error = ResultError(category=ErrorCategory.MAPPING, message=str(exc))
            return Delivery(key, None, error, source, trace, turn)
        except Exception as exc:
            # An adapter that cannot build a request for this event makes it unmappable, never a stall.
            log.exception(
                "request mapping failed",
                extra={"event_id": key.event_id, "platform": platform.value, "trace_id": trace.trace_id},
            )
            error = ResultError(
                category=ErrorCategory.MAPPING, message=f"internal mapping error: {type(exc).__name__}"
            )
            return Delivery(key, None, error, source, trace, turn)
        # Added here, once for every adapter: what an adapter builds stays a pure mapping of the event.
        request = PlatformRequest(
            request.method, request.url, (*request.headers, *trace.http_headers()), request.body
        )
        return Delivery(key, request, None, source, trace, turn)

    def prepare_parked(self, parked: ParkedDelivery) -> Delivery:
        """A parked delivery, built again from its input record with its connection as it is now."""
        event = decode_event(parked.value, max_bytes=len(parked.value))
        trace = TraceContext.parse(parked.traceparent) if parked.traceparent else None
        return self.prepare(
            event, parked.platform, Source(parked.topic, parked.partition, parked.offset), trace
        )

    async def run(self, delivery: Delivery) -> bool:
        """Deliver and publish the result; False when its turn said to park it (`ConnectionHeld`):
        nothing was sent or published and its claim is released, for the caller to park it."""
        try:
            await self._run(delivery)
        except ConnectionHeld:
            return False
        return True

    async def _run(self, delivery: Delivery) -> None:
        key = delivery.key
        claim = await self._claim(key)
        busy = Backoff(0.05, 1.0)
        while claim.status is ClaimStatus.BUSY:
            # Another replica holds it (e.g. mid-rebalance); it will finish or its lease will lapse.
            await busy.wait()
            claim = await self._claim(key)

        if claim.status is ClaimStatus.DUPLICATE:
            self._metrics.idempotency_hits.labels(
                key.platform.value, IdempotencyHit.DUPLICATE, self._label_of(key.platform, key.connection)
            ).inc()
            log.debug(
                "already reported; skipped",
                extra={
                    "event_id": key.event_id,
                    "order_number": key.order_number,
                    "platform": key.platform.value,
                    "connection": key.connection,
                    "trace_id": delivery.trace.trace_id,
                },
            )
            return
        if claim.status is ClaimStatus.UNREPORTED and claim.result is not None:
            stored = OrderSyncResult.model_validate(orjson.loads(claim.result))
            await self._publish_stored(key, stored, claim.result, delivery.source, delivery.trace)
            return

        # In flight from here until reported: a hard kill anywhere in between may repeat the request.
        label = self._label_of(key.platform, key.connection)
        gauge = self._inflight.get((key.platform, label))
        if gauge is None:
            gauge = self._metrics.inflight_deliveries.labels(key.platform.value, label)
            self._inflight[(key.platform, label)] = gauge
        gauge.inc()
        try:
            await self._run_claimed(delivery, claim.status)
        finally:
            gauge.dec()

    async def _claim(self, key: DeliveryKey) -> Claim:
        async with self._claiming:
            return await self._guard.call(self._batch.claim, key)

    async def _run_claimed(self, delivery: Delivery, status: ClaimStatus) -> None:
        key = delivery.key
        started = time.monotonic()
        if status is ClaimStatus.STALE:
            self._metrics.idempotency_hits.labels(
                key.platform.value, IdempotencyHit.STALE, self._label_of(key.platform, key.connection)
            ).inc()
            report = DeliveryReport(Outcome.SKIPPED_STALE, None, 0, None)
        else:
            report = await self._attempt(delivery)
        # Built from known-good values: pydantic's validation would only re-check them.
        result = OrderSyncResult.model_construct(
            result_id=OrderSyncResult.result_id_for(key.event_id, key.platform),
            event_id=key.event_id,
            order_number=key.order_number,
            order_version=key.version,
            platform=key.platform,
            outcome=report.outcome,
            connection=key.connection,
            status_code=report.status_code,
            attempts=report.attempts,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            error=report.error,
            completed_at=utc_now_rfc3339(),
        )
        encoded = encode_result(result)
        acknowledged = False
        try:
            await self._publisher.publish_result(result, encoded, delivery.source, delivery.trace)
            acknowledged = True
            # Outcome and report in one write, now that Kafka holds the result. A hard kill before it
            # leaves the delivery claimed: its request and result are repeated, as for any delivery
            # in flight (README "Guarantees": at most the in-flight deliveries of each pipeline).
            await self._guard.call(self._batch.record_outcome, key, report.outcome, encoded, reported=True)
        except asyncio.CancelledError:
            # Abandoned (rebalance, shutdown): keep the outcome, so whoever reads the partition next
            # does not send the request again. Before the acknowledgement it publishes the result
            # (the record may still have reached Kafka); after it, the result is out: say so once.
            write = self._store.record_outcome(key, report.outcome, encoded, reported=acknowledged)
            await asyncio.shield(self._last_word(key, write, "could not keep the outcome"))
            if acknowledged:
                self._reported(result, delivery.trace)
            raise
        self._reported(result, delivery.trace)

    async def _attempt(self, delivery: Delivery) -> DeliveryReport:
        if delivery.request is None:
            return DeliveryReport(Outcome.UNMAPPABLE, None, 0, delivery.unmappable)
        key = delivery.key
        # Asked now, not when the request was built: a connection changed meanwhile sends with its
        # new credentials; one removed meanwhile ends as if it had never been there (replayable).
        dispatcher = self.connections.dispatcher(key.platform, key.connection)
        if dispatcher is None:
            return DeliveryReport(Outcome.UNMAPPABLE, None, 0, _not_configured(key))
        try:
            return await dispatcher.deliver(delivery.request, delivery.turn)
        except ConnectionHeld:
            # Nothing was sent: whoever sends it later (from the store) claims it afresh.
            await self._guard.call(self._store.release, key, self._owner)
            raise
        except asyncio.CancelledError:
            # Abandoned (rebalance or shutdown): let whoever gets the partition next send it at once.
            release = self._store.release(delivery.key, self._owner)
            await asyncio.shield(self._last_word(delivery.key, release, "could not release claim"))
            raise

    async def _last_word(self, key: DeliveryKey, write: Awaitable[None], failed: str) -> None:
        """A store write of abandoned work, at most 2 s and never raised: without it the claim's
        lease lapses on its own and the next owner sends the request again."""
        try:
            await asyncio.wait_for(write, timeout=2)
        except Exception as exc:
            log.warning("%s: %s", failed, exc, extra={"event_id": key.event_id})

    async def _publish_stored(
        self, key: DeliveryKey, result: OrderSyncResult, encoded: bytes, source: Source, trace: TraceContext
    ) -> None:
        """A result recorded earlier and never acknowledged (its process stopped in between)."""
        await self._publisher.publish_result(result, encoded, source, trace)
        await self._guard.call(self._batch.mark_reported, key)
        self._reported(result, trace)

    def _reported(self, result: OrderSyncResult, trace: TraceContext) -> None:
        label = self._label_of(result.platform, result.connection)
        counter = self._delivered.get((result.platform, label, result.outcome))
        if counter is None:
            counter = self._metrics.deliveries.labels(result.platform.value, result.outcome.value, label)
            self._delivered[(result.platform, label, result.outcome)] = counter
        counter.inc()
        failed = not result.outcome.succeeded
        if not (failed or log.isEnabledFor(logging.DEBUG)):
            return
        context = {
            "event_id": result.event_id,
            "order_number": result.order_number,
            "platform": result.platform.value,
            "connection": result.connection,
            "outcome": result.outcome.value,
            "status_code": result.status_code,
            "attempts": result.attempts,
            "trace_id": trace.trace_id,
        }
        if not failed:
            log.debug("delivered", extra=context)
        else:
            reason = result.error.message if result.error else result.outcome.value
            log.warning("delivery failed: %s", reason, extra=context)


def _not_configured(key: DeliveryKey) -> ResultError:
    return ResultError(
        category=ErrorCategory.MAPPING,
        message=f"connection {key.connection!r} is not configured for {key.platform.value}"
        " (order-sync replay re-drives this delivery once it is)",
    )
