"""Plain aiokafka group members, each a process of its own (SIGTERM: a clean stop, SIGKILL: a crash):
the baseline a connector's rebalance timing is held to, on the same broker with the same group settings.

`python -m tests.support.plain BOOTSTRAP TOPIC GROUP SESSION_MS HEARTBEAT_MS [INSTANCE_ID]` runs one
member: subscribed in the constructor and polled as aiokafka's documentation does, printing its
assignment (a JSON list of partitions) whenever it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class PlainMember:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        session_timeout_ms: int,
        heartbeat_interval_ms: int,
        instance_id: str | None = None,
    ) -> None:
        self._args = [bootstrap, topic, group, str(session_timeout_ms), str(heartbeat_interval_ms)]
        self._args += [instance_id] if instance_id else []
        #: The partitions it last reported.
        self.partitions: frozenset[int] = frozenset()
        #: Told to stop (or killed): its partitions no longer count as owned.
        self.leaving = False
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> PlainMember:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.plain",
            *self._args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            self.partitions = frozenset(json.loads(line))

    @property
    def owning(self) -> frozenset[int]:
        """What it consumes: its partitions while it runs and is not leaving."""
        running = self._process is not None and self._process.returncode is None
        return self.partitions if running and not self.leaving else frozenset()

    def terminate(self) -> None:
        self.leaving = True
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.leaving = True
        if self._process is not None and self._process.returncode is None:
            self._process.kill()

    async def wait_exit(self, timeout_s: float = 30) -> None:
        assert self._process is not None
        try:
            await asyncio.wait_for(self._process.wait(), timeout_s)
        finally:
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
            if self._reader is not None:
                await self._reader


async def wait_owned(members: Iterable[PlainMember], partitions: int, timeout_s: float, what: str) -> None:
    """Until the members still running (and not leaving) own every partition between them."""
    group = list(members)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while frozenset().union(*(m.owning for m in group)) != frozenset(range(partitions)):
        if loop.time() > deadline:
            owned = [sorted(m.owning) for m in group]
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}: {owned}")
        await asyncio.sleep(0.05)


async def _member(
    bootstrap: str, topic: str, group: str, session_ms: int, heartbeat_ms: int, instance_id: str | None
) -> None:
    from aiokafka import AIOKafkaConsumer

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        group_instance_id=instance_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=heartbeat_ms,
    )
    await consumer.start()
    reported: list[int] | None = None
    try:
        while not stop.is_set():
            await consumer.getmany(timeout_ms=100)
            now = sorted(tp.partition for tp in consumer.assignment())
            if now != reported:
                print(json.dumps(now), flush=True)
                reported = now
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


if __name__ == "__main__":
    bootstrap, topic, group, session, heartbeat, *instance = sys.argv[1:]
    asyncio.run(
        _member(bootstrap, topic, group, int(session), int(heartbeat), instance[0] if instance else None)
    )
