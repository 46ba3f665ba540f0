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


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (everything but idle and iowait), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICKS


@dataclass
class SamplerGroup:
    """Several processes measured as one system: CPU summed, peak RSS the largest one's."""

    members: list[ProcessSampler]

    def start(self) -> SamplerGroup:
        for member in self.members:
            member.start()
        return self

    async def stop(self) -> None:
        for member in self.members:
            await member.stop()

    def cpu_at(self, moment: float) -> float:
        return sum(member.cpu_at(moment) for member in self.members)

    @property
    def peak_rss_mib(self) -> float:
        return max((member.peak_rss_mib for member in self.members), default=0.0)


class CpuBudget:
    """Where the machine's CPU went during a run: each named process, and the machine as a whole.

    `cores(start, end)` gives each one's average number of busy cores over that window; "other"
    is what no named process used (other sessions' work on a shared machine, the kernel).
    """

    def __init__(self, pids: dict[str, int], interval_s: float = 0.5) -> None:
        self._samplers = {name: ProcessSampler(pid, interval_s) for name, pid in pids.items()}
        self._machine: list[tuple[float, float]] = []
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> CpuBudget:
        for sampler in self._samplers.values():
            sampler.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            self._machine.append((time.time(), machine_busy_seconds()))
            await asyncio.sleep(self._interval_s)

    async def stop(self) -> None:
        for sampler in self._samplers.values():
            await sampler.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._machine.append((time.time(), machine_busy_seconds()))

    def _machine_at(self, moment: float) -> float:
        points = self._machine
        if not points:
            return 0.0
        if moment <= points[0][0]:
            return points[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if t0 <= moment <= t1:
                return v0 + (v1 - v0) * ((moment - t0) / (t1 - t0) if t1 > t0 else 1.0)
        return points[-1][1]

    def cores(self, start: float, end: float, **measured: ProcessSampler | SamplerGroup) -> dict[str, float]:
        span = max(end - start, 1e-9)
        samplers: dict[str, ProcessSampler | SamplerGroup] = {**measured, **self._samplers}
        used = {name: (s.cpu_at(end) - s.cpu_at(start)) / span for name, s in samplers.items()}
        machine = (self._machine_at(end) - self._machine_at(start)) / span
        used["other"] = max(0.0, machine - sum(used.values()))
        used["machine"] = machine
        return {name: round(value, 2) for name, value in used.items()}
