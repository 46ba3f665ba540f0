"""The suite as a whole: one port or several, the connector's environment, `order-sync simulate`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import pytest

from connector.config import load_settings
from connector.devtools.simulators.requestlog import RequestLog
from connector.devtools.simulators.server import SimulatorSuite
from connector.models import Platform
from tests.simulators.conftest import SimulatorClient


async def test_connector_env_enables_every_platform_at_the_suite(suite: SimulatorSuite) -> None:
    env = suite.connector_env()
    settings = load_settings(environ=env)
    assert settings.platforms.enabled() == list(Platform)
    for platform in Platform:
        assert settings.platforms.get(platform).resolved_base_url() == suite.base_url(platform)
        assert suite.base_url(platform) == f"http://127.0.0.1:{suite.port}{suite[platform].mount}"
    assert env["ORDER_SYNC_PLATFORMS__VENTMERE__ORGANIZATION_ID"] == suite.ventmere.organization_id
    assert set(suite.connector_env(prefix="X_")) == {name.replace("ORDER_SYNC_", "X_", 1) for name in env}


async def test_separate_ports_serve_one_platform_each() -> None:
    async with SimulatorSuite(separate_ports=True) as suite, aiohttp.ClientSession() as session:
        assert len(set(suite.ports.values())) == 4
        client = SimulatorClient(suite, session)
        assert (await client.put(Platform.VUCUSTOM, "/api/v1/orders?id=1", {"order": {}}))[0] == 200
        assert (await client.put(Platform.SELLERCLOUD, "/api/Orders/1", {}))[0] == 200
        wrong_port = suite.base_url(Platform.VUCUSTOM).replace(
            str(suite.ports[Platform.VUCUSTOM]), str(suite.ports[Platform.VENTMERE])
        )
        async with session.put(f"{wrong_port}/api/v1/orders?id=1", json={"order": {}}) as response:
            assert response.status == 404


async def test_request_log_is_bounded_and_waitable() -> None:
    async with SimulatorSuite(log_maxlen=3) as suite, aiohttp.ClientSession() as session:
        client = SimulatorClient(suite, session)
        waiter = asyncio.create_task(suite.vucustom.log.wait_for(lambda log: len(log.answered(200)) == 3))
        for order_id in range(5):
            await client.put(Platform.VUCUSTOM, f"/api/v1/orders?id={order_id}", {"order": {"note": "n"}})
        await waiter
        assert [entry.order_id for entry in suite.vucustom.log] == ["2", "3", "4"]
        entry = suite.vucustom.log.for_order("4")[0]
        assert (entry.method, entry.query, entry.body, entry.status) == (
            "PUT",
            "id=4",
            {"order": {"note": "n"}},
            200,
        )
        assert str(entry.header("authorization")).startswith("Basic ")
    with pytest.raises(TimeoutError):
        await RequestLog().wait_for(lambda log: len(log) > 0, timeout_s=0.05)


@pytest.mark.slow
async def test_order_sync_simulate_serves_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from connector.devtools.simulators.server import run_simulate; "
        "sys.exit(run_simulate(0, 1.0))",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    env: dict[str, str] = {}
    try:
        async with asyncio.timeout(20):
            while "ORDER_SYNC_PLATFORMS__VENTMERE__ORGANIZATION_ID" not in env:
                line = (await process.stdout.readline()).decode()
                assert line, "order-sync simulate exited early"
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").strip().partition("=")
                    env[name] = value
            async with aiohttp.ClientSession() as session:
                url = env["ORDER_SYNC_PLATFORMS__VUCUSTOM__BASE_URL"] + "/api/v1/orders?id=1"
                async with session.put(url, json={"order": {}}) as response:
                    assert response.status == 401
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
