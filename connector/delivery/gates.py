"""A platform's gates, one per connection with deliveries in memory or in the store (`gate.py`).

The platform's pipeline asks this for a connection's gate, tells it which partitions it reads, and
asks whether to fetch at all: an operator's pause of the whole platform is the gate of each of its
connections closed, so the pipeline stops fetching rather than parking every event.
"""

from __future__ import annotations

from connector.control.pauses import Pauses
from connector.delivery.gate import GateState, HeldGauge, PlatformShare, TargetGate
from connector.delivery.parked import ParkedStore
from connector.delivery.runner import DeliveryRunner
from connector.models import Platform
from connector.observability.metrics import Metrics

#: Idle gates (no delivery in memory or in the store) are let go once the map grows this much beyond
#: twice what the last sweep kept: events may name connections that no configuration has, each of
#: which has a gate while it has deliveries.
IDLE_SLACK = 256


class Gates:
    def __init__(
        self,
        platform: Platform,
        runner: DeliveryRunner,
        parked: ParkedStore,
        pauses: Pauses | None,
        metrics: Metrics,
        capacity: int,
        supersede: bool = False,
    ) -> None:
        self.platform = platform
        self._parked = parked
        self._pauses = pauses
        held = HeldGauge(platform, runner.connections, metrics.held_deliveries)
        self._share = PlatformShare(platform, runner, parked, pauses, capacity, supersede, held)
        self._gates: dict[str, TargetGate] = {}
        self._sweep_at = IDLE_SLACK

    def gate(self, connection: str) -> TargetGate:
        gate = self._gates.get(connection)
        if gate is None:
            if len(self._gates) >= self._sweep_at:
                self._sweep()
            gate = self._gates[connection] = TargetGate(connection, self._share)
        return gate

    def fetch_paused(self) -> bool:
        """An operator paused the whole platform: its pipeline fetches nothing."""
        return self._pauses is not None and self._pauses.platform_paused(self.platform) is not None

    def state(self, connection: str) -> GateState | None:
        """What the status shows of a configured connection (None: not configured)."""
        gate = self._gates.get(connection) or TargetGate(connection, self._share)
        return gate.state()

    def held_backlog(self) -> dict[str, int]:
        """Parked deliveries per connection that has any (for `order-sync status`)."""
        return {name: gate.backlog for name, gate in self._gates.items() if gate.backlog}

    async def assigned(self, partitions: list[int]) -> None:
        """Learn what waits in the store for the partitions this pipeline now reads."""
        self._share.partitions.update(partitions)
        counts = await self._parked.counts(self.platform, partitions)
        for (connection, partition), count in counts.items():
            self.gate(connection).found(partition, count)

    async def revoked(self, partitions: list[int]) -> None:
        gone = set(partitions)
        self._share.partitions -= gone
        for gate in list(self._gates.values()):
            await gate.revoked(gone)

    async def close(self) -> None:
        self._share.stopping = True
        for gate in list(self._gates.values()):
            await gate.stop()

    def _sweep(self) -> None:
        for name in [name for name, gate in self._gates.items() if gate.idle]:
            del self._gates[name]
        # Twice what stayed: a platform with many connections in use does not sweep them again and
        # again (each sweep reads every gate), and one with few keeps a small map.
        self._sweep_at = 2 * len(self._gates) + IDLE_SLACK
