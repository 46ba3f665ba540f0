"""CPU time and memory of another process, read from /proc (Linux)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name (field 2) may hold spaces; the fields after it are fixed.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM): resident set size now and its peak, in KiB."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # wall clock, time.time()
    cpu_s: float
    rss_kib: int
    hwm_kib: int


@dataclass
class ProcessSampler:
    """Samples a process's CPU time and RSS every `interval_s` until stopped or the process exits."""

    pid: int
    interval_s: float = 0.25
    samples: list[Sample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> ProcessSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()

    def sample(self) -> Sample | None:
        try:
            cpu = cpu_seconds(self.pid)
            rss, hwm = memory_kib(self.pid)
        except (OSError, IndexError, ValueError):
            return None
        taken = Sample(time.time(), cpu, rss, hwm)
        self.samples.append(taken)
        return taken

    async def _run(self) -> None:
        while self.sample() is not None:  # noqa: ASYNC110 - sampling, not waiting
            await asyncio.sleep(self.interval_s)

    def cpu_at(self, moment: float) -> float:
        """CPU seconds used by `moment`, interpolated between the samples around it."""
        points = self.samples
        if not points:
            return 0.0
        if moment <= points[0].at:
            return points[0].cpu_s
        for before, after in itertools.pairwise(points):
            if before.at <= moment <= after.at:
                span = after.at - before.at
                share = (moment - before.at) / span if span > 0 else 1.0
                return before.cpu_s + share * (after.cpu_s - before.cpu_s)
        return points[-1].cpu_s

    @property
    def peak_rss_mib(self) -> float:
        return max((s.hwm_kib for s in self.samples), default=0) / 1024
