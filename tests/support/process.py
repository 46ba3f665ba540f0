"""`order-sync run` as a subprocess, the way operators run it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from connector.devtools.broker import free_port

ORDER_SYNC = str(Path(sys.executable).with_name("order-sync"))


class ConnectorProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.http_port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_SYNC_")}
        self.env = {
            **base,
            "ORDER_SYNC_HTTP__PORT": str(self.http_port),
            "ORDER_SYNC_HTTP__HOST": "127.0.0.1",
            "ORDER_SYNC_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "ORDER_SYNC_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
            "ORDER_SYNC_KAFKA__COMMIT_INTERVAL_S": "0.2",
            "ORDER_SYNC_KAFKA__LAG_REFRESH_S": "1",
            **env,
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ConnectorProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen([ORDER_SYNC, "run"], env=self.env, stdout=log, stderr=log)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            return response.status, await response.text()

    async def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The value of one sample on /metrics (0 when absent)."""
        _, text = await self.get("/metrics")
        wanted = labels or {}
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            pairs = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
            pairs = {k: v.strip('"') for k, v in pairs.items()}
            if all(pairs.get(k) == v for k, v in wanted.items()):
                total += float(value)
        return total

    async def wait_ready(self, timeout_s: float = 30) -> None:
        await self.wait_until(lambda: self._ready(), timeout_s, "readiness")

    async def _ready(self) -> bool:
        try:
            status, _ = await self.get("/readyz")
        except aiohttp.ClientError:
            return False
        return status == 200

    async def wait_until(self, check: object, timeout_s: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self.assert_running()
            result = check() if callable(check) else check
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; log: {self.log_path}")
            await asyncio.sleep(0.1)

    def assert_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"connector exited with {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def wait_exit(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.process.poll() is None:
            if loop.time() > deadline:
                self.kill()
                raise AssertionError(f"connector did not exit within {timeout_s}s\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        return self.process.returncode


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`order-sync ARGS` with `env`; its exit code and its output (stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        ORDER_SYNC, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()
