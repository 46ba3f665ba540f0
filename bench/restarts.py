"""Restarts: order-sync against plain aiokafka members in the same patterns, on the embedded broker.

`python -m bench.restarts` runs the scenarios of `tests/resilience/test_restarts.py` (every replica
restarted at once under static ids, a rolling restart, a replica killed, a group slow to rebalance)
and one more: every replica restarted at once under dynamic membership after the groups went
through a rebalance, issue 27's pattern (a clean stop then sends LeaveGroup). A scenario that does
not reach lag 0 within `--timeout` is reported with its first delivery and the platforms still
waiting. It prints the rows of bench/README.md "Restarts". On code without GROUP_INSTANCE_ID (before
the fix) the static scenario is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
from collections.abc import Awaitable
from pathlib import Path

from connector.config import KafkaSettings
from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.resilience.conftest import PLATFORM_NAMES, StartConnector
from tests.resilience.test_restarts import (
    LIGHT,
    PARTITIONS,
    Setup,
    Stalled,
    all_at_once,
    beside,
    killed,
    ready,
    rolling,
    slow_group,
    stopped,
    until,
)
from tests.support.plain import PlainMember, wait_owned
from tests.support.process import ConnectorProcess


async def plain_after_a_rebalance(
    setup: Setup, members: list[PlainMember], timeout_s: float, newest_first: bool
) -> float:
    """The second member joins once the first has its partitions (a rebalance), both are stopped
    (each sends LeaveGroup), together or the newest first, two new ones start; inf if they never
    own every partition."""
    topic, group = await setup.plain_topic()
    first = await setup.plain(topic, group).start()
    members.append(first)
    await wait_owned([first], PARTITIONS, 60, "the first plain member")
    second = await setup.plain(topic, group).start()
    members.append(second)
    await until(lambda: bool(first.owning and second.owning), 60, "both plain members' partitions")
    await wait_owned([first, second], PARTITIONS, 60, "both plain members")
    if newest_first:
        second.terminate()
        await second.wait_exit()
    for member in (first, second):
        member.terminate()
    await asyncio.gather(first.wait_exit(), second.wait_exit())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    new = [setup.plain(topic, group) for _ in range(2)]
    members += new
    await asyncio.gather(*(m.start() for m in new))
    try:
        await wait_owned(new, PARTITIONS, timeout_s, "the restarted plain members")
    except AssertionError:
        return math.inf
    return loop.time() - t0


async def dynamic_all_at_once(
    setup: Setup, connectors: StartConnector, timeout_s: float, newest_first: bool
) -> str:
    """Issue 27's pattern, every platform: the second replica started once the first is ready, a
    first batch, both stopped (SIGTERM), together or the newest first, two new ones started. The
    first replica is the leader of every group on the embedded broker: stopped last, it is the
    departed leader of the broker's fault in every group; stopped together, in some."""

    async def plain(setup: Setup, members: list[PlainMember]) -> float:
        return await plain_after_a_rebalance(setup, members, timeout_s, newest_first)

    async with beside(plain, setup) as plain_s, setup.reader() as reader:
        first = connectors(setup.env)
        await ready(first)
        second = connectors(setup.env)
        await ready(second)
        await setup.batch(reader)
        if newest_first:
            second.terminate()
            await stopped(second)
        first.terminate()
        second.terminate()
        await stopped(first, second)
        t0 = asyncio.get_running_loop().time()
        connectors(setup.env)
        connectors(setup.env)
        events = setup.events("dynamic")
        await setup.produce(events)
        try:
            first_s, lag0_s = await setup.flow(reader, events, t0, timeout_s=timeout_s)
            outcome = f"{first_s:.1f} s / {lag0_s:.1f} s"
        except Stalled as stalled:
            began = "none" if stalled.first is None else f"{stalled.first:.1f} s"
            outcome = f"{began} / none in {timeout_s:.0f} s (waiting: {', '.join(sorted(stalled.missing))})"
        rejoined = await plain_s
    plain_text = f"none in {timeout_s:.0f} s" if math.isinf(rejoined) else f"{rejoined:.1f} s"
    how = "the newest stopped first" if newest_first else "stopped together"
    return f"all at once, dynamic, after a rebalance, {how} | {plain_text} | {outcome}"


async def main(timeout_s: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-restarts-"))
    started: list[ConnectorProcess] = []

    def connectors(env: dict[str, str]) -> ConnectorProcess:
        process = ConnectorProcess(env, tmp / f"connector-{len(started)}.log").start()
        started.append(process)
        return process

    async def row(name: str, measure: Awaitable[object]) -> None:
        try:
            figures = await measure
        except AssertionError as exc:
            figures = f"failed: {exc}"
        print(f"{name} | {figures}", flush=True)

    try:
        async with EmbeddedBroker(log_file=tmp / "tansu.log") as broker, SimulatorSuite() as suite:

            async def setup(name: str, platforms: tuple[str, ...]) -> Setup:
                return await Setup(name, broker, suite, tmp, platforms).create()

            if "group_instance_id" in KafkaSettings.model_fields:
                await row("static ids", all_at_once(await setup("all", PLATFORM_NAMES), connectors))
            for newest_first in (False, True):
                dynamic = await setup("dynamic", PLATFORM_NAMES)
                await row("dynamic", dynamic_all_at_once(dynamic, connectors, timeout_s, newest_first))
            await row("dynamic", rolling(await setup("rolling", LIGHT), connectors))
            await row("dynamic", killed(await setup("killed", LIGHT), connectors))
            await row("slow group", slow_group(await setup("slow", LIGHT), connectors))
    finally:
        for process in started:
            process.kill()
    print(f"logs: {tmp}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Restarts: order-sync against plain aiokafka members.")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a scenario may take to lag 0")
    asyncio.run(main(parser.parse_args().timeout))
