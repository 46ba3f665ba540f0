"""Several accounts per platform: each its own credentials, orders, log, tokens, faults and limit."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.commands import cli
from connector.config import load_settings
from connector.devtools.simulators import server
from connector.devtools.simulators.base import PlatformSimulator
from connector.devtools.simulators.elasticpath import ElasticPathSimulator
from connector.devtools.simulators.limits import RequestsPerSecond, WindowQuota
from connector.devtools.simulators.sellercloud import SellercloudSimulator
from connector.devtools.simulators.server import SimulatorSuite
from connector.devtools.simulators.ventmere import VentmereSimulator
from connector.devtools.simulators.vucustom import VuCustomSimulator
from connector.models import Platform

VENTMERE_EXAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "golden" / "ventmere_page_example.json").read_text(encoding="utf-8")
)
#: The credential a test rotates on each platform, and the other keys its settings carry.
ROTATED = {
    Platform.VUCUSTOM: "api_secret",
    Platform.SELLERCLOUD: "password",
    Platform.ELASTICPATH: "client_secret",
    Platform.VENTMERE: "api_token",
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


async def token(
    session: aiohttp.ClientSession, platform: Platform, settings: dict[str, str]
) -> tuple[int, str | None]:
    """(status, token) of the token request a connector with `settings` makes."""
    if platform is Platform.SELLERCLOUD:
        credentials = {"Username": settings["username"], "Password": settings["password"]}
        request = session.post(settings["base_url"] + "/api/token", json=credentials)
    else:
        form = {
            "grant_type": "client_credentials",
            "client_id": settings["client_id"],
            "client_secret": settings["client_secret"],
        }
        request = session.post(settings["base_url"] + "/oauth/access_token", data=form)
    async with request as response:
        return response.status, (await response.json())["access_token"] if response.status == 200 else None


async def update(
    session: aiohttp.ClientSession,
    platform: Platform,
    settings: dict[str, str],
    order_id: str,
    *,
    note: str = "n",
    bearer: str | None = None,
) -> int:
    """The status of an order update sent as a connector with `settings` sends it: a token first on
    the token platforms (unless `bearer` is given), whose refusal is then the answer."""
    base_url = settings["base_url"]
    headers: dict[str, str] = {}
    body: dict[str, Any]
    if platform is Platform.VUCUSTOM:
        pair = f"{settings['api_key']}:{settings['api_secret']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        url, body = f"{base_url}/api/v1/orders?id={order_id}", {"order": {"note": note}}
    elif platform is Platform.VENTMERE:
        headers["Authorization"] = f"Bearer {settings['api_token']}"
        headers["X-S2-Organization"] = settings["organization_id"]
        url, body = f"{base_url}/order/{order_id}", {**VENTMERE_EXAMPLE, "customerNote": note}
    else:
        if bearer is None:
            status, bearer = await token(session, platform, settings)
            if bearer is None:
                return status
        headers["Authorization"] = f"Bearer {bearer}"
        if platform is Platform.SELLERCLOUD:
            url, body = f"{base_url}/api/Orders/{order_id}", {"OrderSource": note}
        else:
            address = {"city": "Ridgewood"}
            url = f"{base_url}/v2/orders/{order_id}"
            body = {"data": {"type": "order", "order_number": note, "shipping_address": address}}
    async with session.put(url, json=body, headers=headers) as response:
        return response.status


def order_ids(simulator: PlatformSimulator) -> set[str]:
    assert isinstance(
        simulator, VuCustomSimulator | SellercloudSimulator | ElasticPathSimulator | VentmereSimulator
    )
    return {str(order_id) for order_id in simulator.orders}


@pytest.mark.parametrize("platform", list(Platform))
async def test_an_account_added_to_a_running_suite_is_served_at_its_own_base_url(
    suite: SimulatorSuite, session: aiohttp.ClientSession, platform: Platform
) -> None:
    eu = suite.add_account(platform, "eu")
    assert suite.account(platform, "eu") is eu
    assert suite.accounts(platform) == {"default": suite[platform], "eu": eu}
    assert suite.base_url(platform, "eu") == f"http://127.0.0.1:{suite.port}/accounts/eu{eu.mount}"
    eu_settings = suite.connection_settings(platform, "eu")
    assert eu_settings["base_url"] == suite.base_url(platform, "eu")
    assert set(eu_settings) == set(suite.connection_settings(platform, "default"))

    assert await update(session, platform, eu_settings, "7") == 200
    assert [entry.order_id for entry in eu.log] == ["7"]
    assert order_ids(eu) == {"7"}
    assert len(suite[platform].log) == 0 and order_ids(suite[platform]) == set()
    # The default account is where it was, and unknown accounts are not served.
    assert await update(session, platform, suite.connection_settings(platform, "default"), "8") == 200
    assert order_ids(suite[platform]) == {"8"} and order_ids(eu) == {"7"}
    async with session.put(suite.base_url(platform).replace(eu.mount, f"/accounts/us{eu.mount}")) as answer:
        assert answer.status == 404


async def test_accounts_keep_their_own_order_state_and_request_log(
    suite: SimulatorSuite, session: aiohttp.ClientSession
) -> None:
    eu = suite.add_account(Platform.VUCUSTOM, "eu")
    assert isinstance(eu, VuCustomSimulator)
    for name in ("default", "eu"):
        settings = suite.connection_settings(Platform.VUCUSTOM, name)
        assert await update(session, Platform.VUCUSTOM, settings, "5", note=f"from {name}") == 200
    assert suite.vucustom.orders[5]["note"] == "from default"
    assert eu.orders[5]["note"] == "from eu"
    assert [entry.body for entry in suite.vucustom.log] == [{"order": {"note": "from default"}}]
    assert [entry.body for entry in eu.log] == [{"order": {"note": "from eu"}}]
    # An unrouted path under the account is logged by it, and answered in the platform's shape.
    async with session.put(suite.base_url(Platform.VUCUSTOM, "eu") + "/api/v1/nothing") as response:
        assert (response.status, await response.json()) == (404, {"error": "Not Found"})
    assert [entry.status for entry in eu.log] == [200, 404]
    assert len(suite.vucustom.log) == 1


@pytest.mark.parametrize("platform", list(Platform))
async def test_an_account_refuses_another_accounts_credentials(
    suite: SimulatorSuite, session: aiohttp.ClientSession, platform: Platform
) -> None:
    suite.add_account(platform, "eu")
    default, eu = suite.connection_settings(platform, "default"), suite.connection_settings(platform, "eu")
    assert {key: value for key, value in default.items() if value == eu[key]} == {}
    eu_url, default_url = eu["base_url"], default["base_url"]
    assert await update(session, platform, {**default, "base_url": eu_url}, "1") == 401
    assert await update(session, platform, {**eu, "base_url": default_url}, "1") == 401
    assert await update(session, platform, eu, "1") == 200
    # Whatever reached the default account was refused there.
    assert all(entry.status == 401 for entry in suite[platform].log)


async def test_a_ventmere_account_is_an_organization_of_its_own(
    suite: SimulatorSuite, session: aiohttp.ClientSession
) -> None:
    suite.add_account(Platform.VENTMERE, "eu")
    eu = suite.connection_settings(Platform.VENTMERE, "eu")
    with_default_organization = {**eu, "organization_id": suite.ventmere.organization_id}
    assert await update(session, Platform.VENTMERE, with_default_organization, "1") == 403


@pytest.mark.parametrize("platform", list(Platform))
async def test_a_rotated_credential_is_accepted_and_the_old_one_refused(
    suite: SimulatorSuite, session: aiohttp.ClientSession, platform: Platform
) -> None:
    eu = suite.add_account(platform, "eu")
    old = suite.connection_settings(platform, "eu")
    assert await update(session, platform, old, "1") == 200
    setattr(eu, ROTATED[platform], "rotated-" + old[ROTATED[platform]])
    new = suite.connection_settings(platform, "eu")
    assert new[ROTATED[platform]] == "rotated-" + old[ROTATED[platform]]
    assert await update(session, platform, old, "2") == 401
    assert await update(session, platform, new, "2") == 200
    # The default account's credential is left as it was.
    assert await update(session, platform, suite.connection_settings(platform, "default"), "3") == 200


@pytest.mark.parametrize("platform", [Platform.SELLERCLOUD, Platform.ELASTICPATH])
async def test_rotation_refuses_the_old_credential_at_the_next_token_request(
    suite: SimulatorSuite, session: aiohttp.ClientSession, platform: Platform
) -> None:
    eu = suite.add_account(platform, "eu")
    old = suite.connection_settings(platform, "eu")
    status, issued = await token(session, platform, old)
    assert status == 200 and issued is not None
    setattr(eu, ROTATED[platform], "rotated")
    assert (await token(session, platform, old))[0] == 401
    assert (await token(session, platform, suite.connection_settings(platform, "eu")))[0] == 200
    # A token issued before the rotation lives on until it expires, as the platforms' do.
    assert await update(session, platform, old, "1", bearer=issued) == 200
    assert eu.log.token_requests == 3


async def test_faults_of_one_account_leave_the_others_alone(
    suite: SimulatorSuite, session: aiohttp.ClientSession
) -> None:
    eu = suite.add_account(Platform.VUCUSTOM, "eu")
    suite.add_account(Platform.VUCUSTOM, "us")
    eu.faults.outage = True
    statuses = {}
    for name in ("default", "eu", "us"):
        settings = suite.connection_settings(Platform.VUCUSTOM, name)
        statuses[name] = await update(session, Platform.VUCUSTOM, settings, "1")
    assert statuses == {"default": 200, "eu": 503, "us": 200}
    assert [entry.fault for entry in eu.log] == ["outage"]
    assert suite.vucustom.faults.outage is False and eu.faults is not suite.vucustom.faults


async def test_a_limit_on_one_account_leaves_the_others_alone(
    suite: SimulatorSuite, session: aiohttp.ClientSession
) -> None:
    eu = suite.add_account(Platform.SELLERCLOUD, "eu")
    # One request an hour: the token request takes it, the update is refused.
    eu.limit = WindowQuota(1, 3600.0)
    eu_settings = suite.connection_settings(Platform.SELLERCLOUD, "eu")
    assert await update(session, Platform.SELLERCLOUD, eu_settings, "1") == 429
    default = suite.connection_settings(Platform.SELLERCLOUD, "default")
    assert [await update(session, Platform.SELLERCLOUD, default, str(n)) for n in range(3)] == [200] * 3
    assert await update(session, Platform.SELLERCLOUD, eu_settings, "1") == 429


async def test_platform_limits_give_every_account_a_limit_of_its_own() -> None:
    async with SimulatorSuite(platform_limits=True) as suite:
        sellercloud = suite.add_account(Platform.SELLERCLOUD, "eu")
        elasticpath = suite.add_account(Platform.ELASTICPATH, "eu")
        vucustom = suite.add_account(Platform.VUCUSTOM, "eu")
        assert isinstance(sellercloud.limit, WindowQuota) and sellercloud.limit is not suite.sellercloud.limit
        assert isinstance(elasticpath.limit, RequestsPerSecond)
        assert elasticpath.limit is not suite.elasticpath.limit
        assert vucustom.limit is None
    async with SimulatorSuite() as suite:
        assert suite.add_account(Platform.SELLERCLOUD, "eu").limit is None


async def test_suite_wide_faults_and_token_expiry_reach_every_account(
    suite: SimulatorSuite, session: aiohttp.ClientSession
) -> None:
    accounts = {platform: suite.add_account(platform, "eu") for platform in Platform}
    suite.set_faults(outage=True)
    for platform in Platform:
        for name in ("default", "eu"):
            settings = suite.connection_settings(platform, name)
            # The token platforms' token endpoint is faulted too, so the token request answers 503.
            assert await update(session, platform, settings, "1") == 503, (platform, name)
    suite.reset_faults()
    assert all(not simulator.faults.outage for simulator in accounts.values())

    issued: dict[tuple[Platform, str], str] = {}
    for platform in (Platform.SELLERCLOUD, Platform.ELASTICPATH):
        for name in ("default", "eu"):
            status, value = await token(session, platform, suite.connection_settings(platform, name))
            assert status == 200 and value is not None
            issued[platform, name] = value
    suite.expire_tokens()
    for (platform, name), value in issued.items():
        settings = suite.connection_settings(platform, name)
        assert await update(session, platform, settings, "2", bearer=value) == 401, (platform, name)


async def test_connector_env_holds_a_connection_for_every_other_account(suite: SimulatorSuite) -> None:
    eu = suite.add_account(Platform.SELLERCLOUD, "eu")
    assert isinstance(eu, SellercloudSimulator)
    suite.add_account(Platform.VENTMERE, "us-west")
    env = suite.connector_env()
    sellercloud = "ORDER_SYNC_PLATFORMS__SELLERCLOUD__"
    assert env[sellercloud + "CONNECTIONS__EU__BASE_URL"] == suite.base_url(Platform.SELLERCLOUD, "eu")
    assert env[sellercloud + "CONNECTIONS__EU__USERNAME"] == eu.username
    assert env[sellercloud + "CONNECTIONS__EU__PASSWORD"] == eu.password
    assert env[sellercloud + "PASSWORD"] == suite.sellercloud.password != eu.password
    ventmere = "ORDER_SYNC_PLATFORMS__VENTMERE__CONNECTIONS__US-WEST__"
    assert {name.removeprefix(ventmere) for name in env if name.startswith(ventmere)} == {
        "BASE_URL",
        "API_TOKEN",
        "ORGANIZATION_ID",
    }
    others = ("__VUCUSTOM__", "__ELASTICPATH__")
    assert not any("CONNECTIONS" in name for name in env if any(other in name for other in others))
    assert set(suite.connector_env(prefix="X_")) == {name.replace("ORDER_SYNC_", "X_", 1) for name in env}

    settings = load_settings(environ=env)
    assert settings.platforms.get(Platform.SELLERCLOUD).connections == {
        "eu": suite.connection_settings(Platform.SELLERCLOUD, "eu")
    }
    assert settings.platforms.get(Platform.VENTMERE).connections == {
        "us-west": suite.connection_settings(Platform.VENTMERE, "us-west")
    }


async def test_accounts_added_before_start_are_served_too_and_on_their_platforms_own_port(
    session: aiohttp.ClientSession,
) -> None:
    suite = SimulatorSuite(separate_ports=True)
    before = suite.add_account(Platform.VUCUSTOM, "eu")
    with pytest.raises(RuntimeError, match="not running"):
        suite.base_url(Platform.VUCUSTOM, "eu")
    async with suite:
        after = suite.add_account(Platform.VENTMERE, "eu")
        for platform, simulator in ((Platform.VUCUSTOM, before), (Platform.VENTMERE, after)):
            port = suite.ports[platform]
            assert suite.base_url(platform, "eu") == f"http://127.0.0.1:{port}/accounts/eu{simulator.mount}"
            assert await update(session, platform, suite.connection_settings(platform, "eu"), "1") == 200
            assert len(simulator.log) == 1
        # Another platform's port does not serve the account.
        wrong_port = suite.base_url(Platform.VENTMERE, "eu").replace(
            str(suite.ports[Platform.VENTMERE]), str(suite.ports[Platform.VUCUSTOM])
        )
        settings = {**suite.connection_settings(Platform.VENTMERE, "eu"), "base_url": wrong_port}
        assert await update(session, Platform.VENTMERE, settings, "2") == 404
    # Stopped and started again, every account is served again.
    async with suite:
        settings = suite.connection_settings(Platform.VENTMERE, "eu")
        assert await update(session, Platform.VENTMERE, settings, "3") == 200
        assert order_ids(after) == {"1", "3"}


async def test_accounts_are_named_as_connections_are(suite: SimulatorSuite) -> None:
    suite.add_account(Platform.SELLERCLOUD, "eu")
    for name in ("default", "eu", "EU", "-eu", "eu_west", "", "x" * 64, "eu/west"):
        with pytest.raises(ValueError):
            suite.add_account(Platform.SELLERCLOUD, name)
    # The same name on another platform is another account.
    assert suite.add_account(Platform.VUCUSTOM, "eu") is not suite.account(Platform.SELLERCLOUD, "eu")
    assert suite.account(Platform.SELLERCLOUD) is suite.sellercloud
    with pytest.raises(KeyError, match="no account 'us'"):
        suite.account(Platform.SELLERCLOUD, "us")


async def test_simulate_serves_the_accounts_it_is_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    stop = asyncio.Event()
    stop.set()  # print the env, then stop at once
    await server.serve(0, accounts=3, stop=stop)
    env: dict[str, str] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
    settings = load_settings(environ=env)
    for platform in Platform:
        connections = settings.platforms.get(platform).connections
        assert sorted(connections) == ["acct1", "acct2"]
        default_url = env[f"ORDER_SYNC_PLATFORMS__{platform.value.upper()}__BASE_URL"]
        urls = {default_url, *(keys["base_url"] for keys in connections.values())}
        assert len(urls) == 3
        mount = SimulatorSuite()[platform].mount
        assert connections["acct1"]["base_url"].endswith(f"/accounts/acct1{mount}")
        credential = ROTATED[platform]
        assert connections["acct1"][credential] != connections["acct2"][credential]
        assert env[f"ORDER_SYNC_PLATFORMS__{platform.value.upper()}__{credential.upper()}"] not in {
            keys[credential] for keys in connections.values()
        }


def test_simulate_passes_its_accounts_option_on(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict[str, Any] = {}

    def run_simulate(port: int, latency_ms: float, **options: Any) -> int:
        asked.update(options, port=port)
        return 0

    monkeypatch.setattr(server, "run_simulate", run_simulate)
    monkeypatch.setattr("sys.argv", ["order-sync", "simulate", "--port", "0", "--accounts", "3"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 0
    assert (asked["port"], asked["accounts"]) == (0, 3)
    asked.clear()
    monkeypatch.setattr("sys.argv", ["order-sync", "simulate", "--accounts", "0"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    # Refused as a usage error: there is always the default account.
    assert (exited.value.code, asked) == (2, {})
