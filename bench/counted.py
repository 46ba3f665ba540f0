"""The connector's own work per event in instructions, not seconds: `bench.own` under callgrind.

A shared machine moves `bench.own`'s CPU seconds by 10-15% from run to run, which hides any change
smaller than that (1,000 connections against one, say). Valgrind's callgrind counts the instructions
the process executes instead: the same for the same code and input, whatever else the machine does.
Start-up (imports, settings, the store opened) is the same for any number of events, so it is taken
out by running twice, with `--small` and `--large` events, and dividing the difference:

    python -m bench.counted [--store memory|sqlite] [--connections N] [--small 500] [--large 1500]

Prints instructions per event (both threads: callgrind serialises them). Needs valgrind (Debian's
package); about a minute per pair of runs, the two runs side by side. The events are the same for
any `--connections` (bench/events.py): only their connection differs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

_COLLECTED = re.compile(rb"Collected : (\d+)")


async def instructions(events: int, store: str, connections: int) -> int:
    """Instructions executed by one `python -m bench.own` process over `events` events."""
    with tempfile.TemporaryDirectory() as workdir:
        argv = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={Path(workdir) / 'callgrind.out'}",
            sys.executable,
            "-m",
            "bench.own",
            "--events",
            str(events),
            "--store",
            store,
            "--connections",
            str(connections),
        ]
        # One hash seed, so dicts and sets are laid out the same way in every run.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        child = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await child.communicate()
    found = _COLLECTED.search(err)
    if child.returncode != 0 or found is None:
        tail = err[-2000:].decode(errors="replace")
        raise RuntimeError(f"callgrind run failed ({child.returncode}): {tail}")
    return int(found.group(1))


async def per_event(small: int, large: int, store: str, connections: int) -> float:
    low, high = await asyncio.gather(
        instructions(small, store, connections), instructions(large, store, connections)
    )
    return (high - low) / (large - small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--connections", type=int, nargs="+", default=[1])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=1500)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: apt-get install valgrind")
    for connections in args.connections:
        count = asyncio.run(per_event(args.small, args.large, args.store, connections))
        print(
            f"{args.store} store, {connections} connections per platform: "
            f"{count / 1e6:.3f} M instructions per event ({args.small} and {args.large} events)",
            flush=True,
        )


if __name__ == "__main__":
    main()
