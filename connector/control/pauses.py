"""Which targets an operator paused: the one owner of "is this platform or connection paused".

Every replica reads the control topic from its beginning (`reader.py`) and applies each record
here, so they all agree. A pause with `until` ends by itself at that time. A connection's gate
(`delivery/gate.py`) asks `paused`: a paused connection is held, as one in outage (its deliveries
are parked, nothing fails); a pause of the whole platform also stops its pipeline's fetching.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Gauge

from connector.control.records import ControlAction, ControlRecord, Target
from connector.models import Platform
from connector.observability.metrics import Metrics

log = logging.getLogger(__name__)

#: `order_sync_paused{connection}` of a pause of the whole platform.
ALL_CONNECTIONS = "_all"


@dataclass(frozen=True, slots=True)
class Pause:
    target: Target
    reason: str
    by: str
    at: datetime
    until: datetime | None

    def document(self) -> dict[str, str | None]:
        return {
            "target": str(self.target),
            "reason": self.reason,
            "by": self.by,
            "at": self.at.isoformat(),
            "until": self.until.isoformat() if self.until else None,
        }


class Pauses:
    def __init__(self, metrics: Metrics, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._pauses: dict[Target, Pause] = {}
        self._metric = metrics.paused
        self._since = metrics.paused_since
        self._gauges: dict[Target, tuple[Gauge, Gauge]] = {}
        self._changed = asyncio.Event()
        self._timers: dict[Target, asyncio.TimerHandle] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def apply(self, target: Target, record: ControlRecord) -> None:
        """The newest record for `target`, as read from the control topic."""
        before = self._pauses.get(target)
        if record.action is ControlAction.PAUSE and not self._over(record.until):
            pause = Pause(target, record.reason or "", record.by, record.at, record.until)
            if pause == before:
                return
            self._pauses[target] = pause
            self._arm(target, record.until)
            log.warning(
                "paused by %s: %s%s",
                record.by,
                pause.reason,
                f" (until {record.until.isoformat()})" if record.until else "",
                extra=self._context(target),
            )
        else:
            if before is None:
                return
            del self._pauses[target]
            self._disarm(target)
            how = (
                "resumed by " + record.by if record.action is ControlAction.RESUME else "pause ended (until)"
            )
            log.warning("%s", how, extra=self._context(target))
        self._changed_now(target)

    def paused(self, platform: Platform, connection: str) -> Pause | None:
        """The pause holding this connection (its own, or its platform's), if any."""
        if not self._pauses:
            return None  # asked before every request: the common answer first
        pause = self._pauses.get(Target(platform=platform)) or self._pauses.get(
            Target(platform=platform, connection=connection)
        )
        if pause is not None and self._over(pause.until):
            return None
        return pause

    def platform_paused(self, platform: Platform) -> Pause | None:
        pause = self._pauses.get(Target(platform=platform))
        if pause is not None and self._over(pause.until):
            return None
        return pause

    def all(self) -> list[Pause]:
        return [p for p in self._pauses.values() if not self._over(p.until)]

    async def wait_resumed(self, platform: Platform, connection: str) -> None:
        while self.paused(platform, connection) is not None:
            await self._changed.wait()

    def _over(self, until: datetime | None) -> bool:
        return until is not None and until <= self._clock()

    def _arm(self, target: Target, until: datetime | None) -> None:
        self._disarm(target)
        if until is None:
            return
        delay = max(0.0, (until - self._clock()).total_seconds())
        self._timers[target] = asyncio.get_running_loop().call_later(delay, self._expire, target)

    def _disarm(self, target: Target) -> None:
        timer = self._timers.pop(target, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, target: Target) -> None:
        self._timers.pop(target, None)
        pause = self._pauses.pop(target, None)
        if pause is None:
            return
        log.warning("pause ended: its --until (%s) came", pause.until, extra=self._context(target))
        self._changed_now(target)

    def _changed_now(self, target: Target) -> None:
        gauges = self._gauges.get(target)
        if gauges is None:
            labels = (target.platform.value, target.connection or ALL_CONNECTIONS)
            gauges = self._gauges[target] = (self._metric.labels(*labels), self._since.labels(*labels))
        pause = self._pauses.get(target)
        gauges[0].set(1 if pause else 0)
        gauges[1].set(pause.at.timestamp() if pause else 0)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in self._listeners:
            listener()

    @staticmethod
    def _context(target: Target) -> dict[str, str]:
        return {"platform": target.platform.value, "connection": target.connection or ALL_CONNECTIONS}
