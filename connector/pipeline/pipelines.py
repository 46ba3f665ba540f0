"""The pipelines one process runs: the intake and one per platform, sharing everything but their groups.

They share the store, the producer, the HTTP session (through the runner) and the decoding work;
each has its own consumer group, offsets, in-flight limit, pause state and lag, so a platform that
is down, slow or throttled holds back only its own pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from connector.config import INTAKE_PIPELINE, Settings
from connector.control.pauses import Pauses
from connector.delivery.gates import Gates
from connector.delivery.parked import ParkedStore
from connector.delivery.runner import DeliveryRunner
from connector.kafka.publisher import Publisher
from connector.models import Platform
from connector.observability.metrics import Metrics
from connector.operations.supervisor import Supervisor
from connector.pipeline.delivery import DeliveryStage
from connector.pipeline.intake import IntakeStage
from connector.pipeline.pipeline import Pipeline
from connector.pipeline.screening import MessageScreen
from connector.stores.batching import EventChecks
from connector.stores.guard import StoreGuard

log = logging.getLogger(__name__)

#: How many in-flight windows apart pipelines may be and still share what was judged of a message
#: (a byte per message and partition: 64 KiB per partition at the default limit).
JUDGED_WINDOWS = 64


def group_of(settings: Settings, pipeline: str) -> str:
    """`{GROUP_ID}` for the intake, `{GROUP_ID}.{platform}` for a platform's pipeline."""
    base = settings.kafka.group_id
    return base if pipeline == INTAKE_PIPELINE else f"{base}.{pipeline}"


class Pipelines:
    def __init__(
        self,
        settings: Settings,
        runner: DeliveryRunner,
        publisher: Publisher,
        guard: StoreGuard,
        platforms: list[Platform],
        metrics: Metrics,
        pauses: Pauses | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        # Decoded messages for pipelines up to half an in-flight window apart (about 12 KiB each); what
        # was judged of each (a byte) for pipelines much further apart.
        self.screen = MessageScreen(
            EventChecks(guard).check_event,
            settings.kafka.max_message_bytes,
            capacity=max(1, settings.max_inflight_events // 2),
            judged_span=JUDGED_WINDOWS * settings.max_inflight_events,
        )
        self.all: list[Pipeline] = []
        self._supervisor = supervisor or Supervisor(metrics.background_task_failures)
        #: Each platform's gates, one per connection (README "Isolation between connections").
        self.gates: dict[Platform, Gates] = {}
        if settings.runs_intake():
            stage = IntakeStage(self.screen, publisher, metrics)
            self.all.append(
                self._pipeline(INTAKE_PIPELINE, stage, settings, guard, metrics, self._supervisor)
            )
        parked = ParkedStore(guard)
        for platform in platforms:
            supersede = settings.platforms.get(platform).supersede_queued_versions
            gates = Gates(platform, runner, parked, pauses, metrics, settings.max_inflight_events, supersede)
            delivery = DeliveryStage(platform, self.screen, runner, gates, metrics, supersede)
            self.gates[platform] = gates
            self.all.append(
                self._pipeline(
                    platform.value, delivery, settings, guard, metrics, self._supervisor, gates.fetch_paused
                )
            )
        self.stopping = False

    @staticmethod
    def _pipeline(
        name: str,
        stage: IntakeStage | DeliveryStage,
        settings: Settings,
        guard: StoreGuard,
        metrics: Metrics,
        supervisor: Supervisor,
        paused: Callable[[], bool] = lambda: False,
    ) -> Pipeline:
        return Pipeline(name, group_of(settings, name), stage, settings, guard, metrics, paused, supervisor)

    @property
    def joined(self) -> bool:
        return all(p.joined for p in self.all)

    def request_stop(self) -> None:
        self.stopping = True
        for pipeline in self.all:
            pipeline.request_stop()

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.all))

    async def run(self) -> None:
        """Run every pipeline until `request_stop`; one that fails stops the others (each drains)."""
        tasks = [asyncio.create_task(p.run(), name=f"pipeline-{p.name}") for p in self.all]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if any(not t.cancelled() and t.exception() is not None for t in done):
                log.error("a pipeline failed; stopping the others")
                self.request_stop()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.screen.close()
