"""py-spy on the connector subprocess, and a top-N summary of its collapsed stacks.

`python -m bench.run --profile DIR` records each order-sync throughput run with
`py-spy record --format raw` (pip install py-spy: a local tool, not a bench dependency) into
DIR/<run>.txt and prints the top entries; `python -m bench.profile FILE` summarises one again.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def start_py_spy(pid: int, out: Path, rate: int = 200) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        print("py-spy not found: pip install py-spy to profile", file=sys.stderr)
        return None
    argv = [binary, "record", "--format", "raw", "--rate", str(rate), "--nonblocking", "-p", str(pid)]
    log = open(out.with_suffix(".log"), "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([*argv, "-o", str(out)], stdout=log, stderr=log)


def stop_py_spy(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/module.py:line)"; keep the function and the file's tail.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    parts = Path(path).parts
    tail = "/".join(parts[-2:]) if parts else path
    return f"{name} ({tail})"


def summarize(path: Path, top: int = 15) -> str:
    """Top frames by own samples and by inclusive samples, as a text table."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return "no samples"
    lines = [f"{samples} samples", "", "own %  | function", "------ | --------"]
    lines += [f"{100 * n / samples:5.1f}  | {name}" for name, n in own.most_common(top)]
    lines += ["", "total % | function", "------- | --------"]
    lines += [f"{100 * n / samples:6.1f}  | {name}" for name, n in total.most_common(top + 10)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw (collapsed) profile.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarize(args.file, args.top))


if __name__ == "__main__":
    main()
