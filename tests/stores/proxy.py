"""A TCP forwarder between a store and its real server, to break and restore the link in tests.

The shared Redis and PostgreSQL servers are never stopped; cutting the proxy looks the same to the
store (connections drop, new ones are refused), and a black hole looks like a server that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from connector.errors import StoreUnavailableError
from connector.stores.base import ClaimStatus, DeliveryKey, IdempotencyStore


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: When set, connections are accepted and then never answered.
        self.black_hole = False
        self.port = 0

    async def start(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every open connection at once."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            if self.black_hole:
                await reader.read()
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
            except OSError:
                writer.transport.abort()
                return
            self._writers.add(upstream_writer)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            sink.transport.abort()


def unused_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def assert_recovers_after_link_cut(store: IdempotencyStore, proxy: TcpProxy, key: DeliveryKey) -> None:
    """Claim through the proxy, cut it (every call is unavailable), restore it (the same store answers
    again, and the claim made before the cut still holds)."""
    try:
        await store.open()
        assert (await store.claim(key, "a", 60)).status is ClaimStatus.PROCEED

        await proxy.cut()
        with pytest.raises(StoreUnavailableError):
            await store.ping()
        with pytest.raises(StoreUnavailableError):
            await store.claim(key, "a", 60)

        await proxy.start()
        await store.ping()
        assert (await store.claim(key, "b", 60)).status is ClaimStatus.BUSY
    finally:
        await store.close()
