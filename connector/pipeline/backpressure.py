"""One pipeline's in-flight events, and whether its partitions must be paused.

Fetching pauses at `MAX_INFLIGHT_EVENTS` and resumes only once half of them have completed: a
pipeline held by its platform (an outage, a throttle) stays paused with one log line, instead of
pausing and resuming every time one event completes.
"""

from __future__ import annotations

import logging

from connector.observability.metrics import Metrics

log = logging.getLogger(__name__)


class Backpressure:
    def __init__(self, pipeline: str, max_inflight: int, metrics: Metrics) -> None:
        self._pipeline = pipeline
        self.max_inflight = max_inflight
        self._resume_at = max_inflight // 2
        self.inflight = 0
        self.paused = False
        # Read when scraped: setting a gauge on every message would cost a lock each time.
        metrics.inflight_events.labels(pipeline).set_function(lambda: self.inflight)
        self._paused_gauge = metrics.partitions_paused.labels(pipeline)
        self._pauses = metrics.pauses.labels(pipeline)
        self._paused_gauge.set(0)

    @property
    def capacity(self) -> int:
        return max(0, self.max_inflight - self.inflight)

    def added(self) -> None:
        self.inflight += 1

    def completed(self, count: int = 1) -> None:
        self.inflight -= count

    def should_pause(self, store_up: bool) -> bool:
        """Decide, and record, whether fetching is paused now (a change of state is logged once)."""
        if not store_up:
            # The store guard logs the outage itself; no new work until the store answers.
            wanted = True
        elif self.paused:
            wanted = self.inflight > self._resume_at
        else:
            wanted = self.inflight >= self.max_inflight
        if wanted != self.paused:
            self.paused = wanted
            self._paused_gauge.set(1 if wanted else 0)
            fields = {"pipeline": self._pipeline, "inflight_events": self.inflight, "store_up": store_up}
            if wanted:
                self._pauses.inc()
                log.info("backpressure: fetching paused", extra={"fields": fields})
            else:
                log.info("backpressure: fetching resumed", extra={"fields": fields})
        return wanted
