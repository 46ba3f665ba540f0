"""What connections cost (bench/README.md, "Connections"): start-up and memory of `order-sync run`
with 1 and with 1,000 connections declared as files, and the connector's own CPU per event with
events spread over 1 and over 1,000 connections per platform (`bench.own`).

    python -m bench.connections [--connections 1000] [--events 20000]

Start-up is measured from the process's start to the log line that says the connection files
are loaded (`connections loaded`) and to `/readyz` 200 (its groups joined); RSS once it is ready
and idle. The files are spread over the four platforms, each with its own credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from bench.infra import ORDER_SYNC, Broker, Child, Simulators, Topics, child_env, wait_ready
from bench.own import own_work
from bench.procstat import memory_kib
from connector.commands import eventloop
from connector.config import ENV_PREFIX
from connector.devtools.broker import free_port
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from connector.stores.sqlite import SqliteStore

#: RSS is read this long after readiness, once start-up's garbage has had a collection or two.
IDLE_S = 5.0


def write_files(directory: Path, count: int, simulators: Simulators) -> None:
    """`count` connection files, round robin over the platforms, each its own account's settings."""
    suite = SimulatorSuite()
    platforms = list(Platform)
    for n in range(count):
        platform = platforms[n % len(platforms)]
        name = f"acct{n}"
        simulator = suite.add_account(platform, name)
        base_url = f"http://127.0.0.1:{simulators.port}/accounts/{name}{simulator.mount}"
        keys = {k.lower(): v for k, v in simulator.connector_settings(base_url).items()}
        document = {"platform": platform.value, "name": name, **keys}
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(document))


async def start_up(
    connections: int, workdir: Path, broker: Broker, simulators: Simulators, *, ready: bool = True
) -> dict[str, float]:
    directory = workdir / f"connections-{connections}"
    directory.mkdir()
    write_files(directory, connections - 1, simulators)
    topics = await Topics.create(broker.bootstrap_servers, f"conn{connections}")
    http_port = free_port()
    env = child_env(
        {
            **simulators.connector_env(),
            **topics.connector_env(),
            f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            f"{ENV_PREFIX}IDEMPOTENCY__URL": f"sqlite:///{workdir / f'store-{connections}.db'}",
            f"{ENV_PREFIX}HTTP__PORT": str(http_port),
            f"{ENV_PREFIX}HTTP__HOST": "127.0.0.1",
            f"{ENV_PREFIX}CONNECTIONS_DIR": str(directory),
        }
    )
    log_path = workdir / f"connector-{connections}.log"
    started = time.monotonic()
    child = Child([ORDER_SYNC, "run"], env, log_path)
    try:
        loaded_s = None
        while loaded_s is None:
            child.check()
            for line in log_path.read_text(errors="replace").splitlines():
                if "connections loaded" in line:
                    loaded_s = time.monotonic() - started
                    count = orjson.loads(line).get("connections")
                    break
            else:
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"no 'connections loaded' line:\n{child.log_tail()}")
                await asyncio.sleep(0.02)
        ready_s = float("nan")
        if ready:
            await wait_ready(http_port, child)
            ready_s = time.monotonic() - started
            await asyncio.sleep(IDLE_S)
        rss = memory_kib(child.pid)[0] / 1024
    finally:
        if ready:
            await child.stop()
        else:
            # Still joining its groups: nothing to drain, no need to wait for a clean stop.
            child.process.kill()
            await child.stop(timeout_s=5)
    return {"connections": float(count), "loaded_s": loaded_s, "ready_s": ready_s, "rss_mib": rss}


async def run(connections: int, events: int, *, ready: bool = True) -> None:
    """With `ready` False, start-up is measured up to the files loaded only (no group join, no idle)."""
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as tmp:
        workdir = Path(tmp)
        async with Broker(log_file=workdir / "broker.log") as broker:
            simulators = await Simulators.start(0, workdir)
            try:
                for count in (1, connections):
                    figures = await start_up(count, workdir, broker, simulators, ready=ready)
                    print(
                        f"{count:>5} connection(s) per process ({figures['connections']:.0f} in all):"
                        f" files loaded {figures['loaded_s']:.2f} s after start,"
                        f" ready {figures['ready_s']:.2f} s,"
                        f" RSS idle {figures['rss_mib']:.1f} MiB",
                        flush=True,
                    )
            finally:
                await simulators.stop()
    for count in (1, connections):
        with tempfile.TemporaryDirectory(prefix="bench-own-") as tmp:
            cpu, _ = await own_work(events, SqliteStore(Path(tmp) / "own.db"), None, count)
        print(
            f"own work, {events} events over {count} connection(s) per platform:"
            f" {cpu / events * 1000:.3f} ms of CPU per event",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    eventloop.run(run(args.connections, args.events), "uvloop")


if __name__ == "__main__":
    main()
