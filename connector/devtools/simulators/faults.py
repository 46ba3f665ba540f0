"""Failures a simulator plays before it looks at a request: latency, outages, 5xx, 429, drops, hangs."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    """A fault played instead of the platform's own answer."""

    #: The request is never answered (until the simulator stops).
    HANG = "hang"
    #: The connection is closed without an answer.
    DROP = "drop"
    #: 503, as during an outage window.
    OUTAGE = "outage"
    #: 429 with `Retry-After`.
    RATE_LIMIT = "rate_limit"
    #: 409, a write conflict (Elastic Path documents it as worth a retry).
    CONFLICT = "conflict"
    #: A random server error (500 by default).
    ERROR = "error"
    #: Every order update refused with `reject_status` (token requests are spared).
    REJECT = "reject"


@dataclass
class Faults:
    """What to inject. Plain mutable fields: tests change them while requests are flowing."""

    latency_s: float = 0.0
    #: Uniform extra latency in [0, jitter_s).
    jitter_s: float = 0.0
    #: Fraction of requests answered `error_status`.
    error_rate: float = 0.0
    error_status: int = 500
    #: While true, every request is answered 503.
    outage: bool = False
    #: Monotonic deadline of an outage window (see `outage_for`).
    outage_until: float | None = None
    #: Every Nth request (counting all of this simulator's requests) is answered 429; 0 = never.
    rate_limit_every: int = 0
    retry_after_s: int = 1
    #: Every Nth order update (counting this simulator's order updates) is answered 409; 0 = never.
    conflict_every: int = 0
    #: Fraction of requests whose connection is closed without an answer.
    drop_rate: float = 0.0
    #: Fraction of requests never answered.
    hang_rate: float = 0.0
    #: When set, every order update is answered with this status (e.g. 422).
    reject_status: int | None = None

    def outage_for(self, seconds: float) -> None:
        """Answer 503 for the next `seconds`."""
        self.outage_until = time.monotonic() + seconds

    def in_outage(self) -> bool:
        return self.outage or (self.outage_until is not None and time.monotonic() < self.outage_until)

    def update(self, **changes: Any) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            setattr(self, name, value)

    def reset(self) -> None:
        """Back to no faults at all."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, f.default)


class FaultInjector:
    """Decides which fault, if any, each request gets; plays latency and holds hung requests."""

    def __init__(self, faults: Faults, seed: int | None = None) -> None:
        self.faults = faults
        self._random = random.Random(seed)
        self._seen = 0
        self._updates_seen = 0
        self._release = asyncio.Event()
        #: Requests being held by a HANG right now.
        self.hung = 0

    async def delay(self) -> None:
        latency = self.faults.latency_s
        if self.faults.jitter_s > 0:
            latency += self._random.uniform(0, self.faults.jitter_s)
        if latency > 0:
            await asyncio.sleep(latency)

    def choose(self, *, order_update: bool) -> FaultKind | None:
        faults = self.faults
        self._seen += 1
        if faults.hang_rate and self._random.random() < faults.hang_rate:
            return FaultKind.HANG
        if faults.drop_rate and self._random.random() < faults.drop_rate:
            return FaultKind.DROP
        if faults.in_outage():
            return FaultKind.OUTAGE
        if faults.rate_limit_every and self._seen % faults.rate_limit_every == 0:
            return FaultKind.RATE_LIMIT
        if order_update:
            self._updates_seen += 1
            if faults.conflict_every and self._updates_seen % faults.conflict_every == 0:
                return FaultKind.CONFLICT
        if faults.error_rate and self._random.random() < faults.error_rate:
            return FaultKind.ERROR
        if order_update and faults.reject_status is not None:
            return FaultKind.REJECT
        return None

    async def hold(self) -> None:
        """Wait until `release_hung` (called when the simulator stops)."""
        release = self._release
        self.hung += 1
        try:
            await release.wait()
        finally:
            self.hung -= 1

    def release_hung(self) -> None:
        self._release.set()
        # Later hangs wait on a fresh event; the released ones hold a reference to the old one.
        self._release = asyncio.Event()

    def status_of(self, kind: FaultKind) -> int:
        statuses = {
            FaultKind.OUTAGE: 503,
            FaultKind.RATE_LIMIT: 429,
            FaultKind.CONFLICT: 409,
            FaultKind.ERROR: self.faults.error_status,
            FaultKind.REJECT: self.faults.reject_status or 422,
        }
        return statuses[kind]
