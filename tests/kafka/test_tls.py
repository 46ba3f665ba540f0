"""Kafka over TLS (README "Kafka security"): the connector and every command that talks to Kafka work
through a mutual-TLS listener, and a wrong CA or a missing client certificate is one clear line.

The embedded broker does not serve TLS: stunnel (Debian `stunnel4`) fronts it, requiring a client
certificate signed by the test CA, and the broker advertises stunnel's port, so every connection a
client makes (bootstrap, then the broker it is told about) goes through TLS. SASL is served by
nothing here; its options are checked up to aiokafka's constructors.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from connector.config import KafkaSettings, load_settings
from connector.devtools.broker import EmbeddedBroker, free_port
from connector.devtools.simulators.server import SimulatorSuite
from connector.errors import ConfigError
from connector.kafka import tls
from connector.kafka.client import TokenFile, client_options, consumer_options, producer_options
from connector.models import Platform
from tests.resilience.conftest import StartConnector, connector_env
from tests.support.events import make_event
from tests.support.kafka import Topics, create_topics
from tests.support.process import run_cli

KEY_PASSWORD = "key-s3cret-for-tls"
#: Only Elastic Path (unlimited here), status every second: fewer groups to join, a quick status.
ONE_PLATFORM = {
    "KAFKA__STATUS_INTERVAL_S": "1",
    "PLATFORMS__ELASTICPATH__RATE_LIMIT_RPS": "0",
    **{f"PLATFORMS__{p.name}__ENABLED": "false" for p in Platform if p is not Platform.ELASTICPATH},
}


@dataclass
class MutualTls:
    """A broker behind a TLS listener that requires a client certificate signed by `ca`."""

    bootstrap: str
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD

    def env(self, **overrides: str | None) -> dict[str, str]:
        """Security settings (names without the ORDER_SYNC_ prefix); an override of None drops one."""
        values: dict[str, str | None] = {
            "KAFKA__SECURITY_PROTOCOL": "SSL",
            "KAFKA__SSL_CAFILE": str(self.ca),
            "KAFKA__SSL_CERTFILE": str(self.client_cert),
            "KAFKA__SSL_KEYFILE": str(self.client_key),
            "KAFKA__SSL_KEY_PASSWORD": KEY_PASSWORD,
            **overrides,
        }
        return {name: value for name, value in values.items() if value is not None}

    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            security_protocol="SSL",
            ssl_cafile=self.ca,
            ssl_certfile=self.client_cert,
            ssl_keyfile=self.client_key,
            ssl_key_password=SecretStr(KEY_PASSWORD),
        )


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate (key encrypted),
    all signed by the CA, and an unrelated second CA."""
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    files = {name: directory / name for name in ("ca", "other-ca", "server", "client")}
    for ca, subject in (("ca", "order-sync test CA"), ("other-ca", "an unrelated CA")):
        openssl("req", "-x509", *new_key, "-keyout", f"{files[ca]}.key", "-out", f"{files[ca]}.pem",
                "-days", "2", "-subj", f"/CN={subject}")  # fmt: skip
    extensions = {
        "server": "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for leaf, ext in extensions.items():
        (directory / f"{leaf}.ext").write_text("basicConstraints=critical,CA:FALSE\n" + ext)
        openssl("req", *new_key, "-keyout", f"{files[leaf]}.key", "-out", f"{files[leaf]}.csr",
                "-subj", f"/CN=order-sync {leaf}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{files[leaf]}.csr", "-CA", f"{files['ca']}.pem", "-CAkey",
                f"{files['ca']}.key", "-CAcreateserial", "-days", "2", "-out", f"{files[leaf]}.pem",
                "-extfile", str(directory / f"{leaf}.ext"))  # fmt: skip
    encrypted = directory / "client-encrypted.key"
    openssl("pkey", "-in", f"{files['client']}.key", "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
            "-out", str(encrypted))  # fmt: skip
    return {
        "ca": directory / "ca.pem",
        "other_ca": directory / "other-ca.pem",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server.key",
        "client_cert": directory / "client.pem",
        "client_key": encrypted,
    }


async def tls_answers(settings: KafkaSettings) -> bool:
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()


def spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (it makes the test certificates)")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def mtls(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MutualTls]:
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if stunnel is None:
        pytest.skip("stunnel is not installed (Debian package stunnel4; .ci/run installs it)")
    directory = tmp_path_factory.mktemp("mtls")
    broker_port, tls_port = free_port(), free_port()
    config = directory / "stunnel.conf"
    config.write_text(
        "foreground = yes\npid =\n[kafka]\n"
        f"accept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{broker_port}\n"
        f"cert = {pki['server_cert']}\nkey = {pki['server_key']}\n"
        f"CAfile = {pki['ca']}\nverify = 2\n"
    )
    broker = EmbeddedBroker(broker_port, directory / "tansu.log", advertised_port=tls_port)
    await broker.start()
    proxy = await asyncio.to_thread(spawn, [stunnel, str(config)], directory / "stunnel.log")
    try:
        running = MutualTls(
            f"127.0.0.1:{tls_port}", pki["ca"], pki["other_ca"], pki["client_cert"], pki["client_key"]
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not await tls_answers(running.settings()):
            assert proxy.poll() is None, (directory / "stunnel.log").read_text(errors="replace")
            assert loop.time() < deadline, f"no answer through stunnel within 20 s; see {directory}"
            await asyncio.sleep(0.1)
        yield running
    finally:
        if proxy.poll() is None:
            proxy.terminate()
            try:
                proxy.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
        broker.stop()


async def replicas(env: dict[str, str]) -> list[dict[str, Any]]:
    code, out = await run_cli(env, "status", "--json")
    assert code == 0, out
    documents: list[dict[str, Any]] = orjson.loads(out)["replicas"]
    return documents


async def test_the_connector_and_every_command_work_over_mutual_tls(
    mtls: MutualTls, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    topics = await create_topics(mtls.bootstrap, 2, **client_options(mtls.settings()))
    connector = connectors(
        connector_env(
            suite,
            topics,
            mtls.bootstrap,
            tmp_path / "store.db",
            "tls",
            **ONE_PLATFORM,
            **topics.control_topics(),
            **mtls.env(),
        )
    )
    await connector.wait_ready(30)

    events = [make_event(f"tls-{n}", 1, {"elasticpath": {"order_id": f"ep-tls-{n}"}}) for n in range(20)]
    event_file = tmp_path / "events.jsonl"
    event_file.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    code, out = await run_cli(connector.env, "produce", str(event_file))
    assert code == 0 and f"published 20 events to {topics.input}" in out, out

    async def all_applied() -> bool:
        applied = await connector.metric(
            "order_sync_deliveries_total", {"platform": "elasticpath", "outcome": "applied"}
        )
        return applied >= 20

    await connector.wait_until(all_applied, 30, "20 deliveries applied over TLS")
    assert len([e for e in suite[Platform.ELASTICPATH].log if e.method == "PUT" and e.status == 200]) >= 20

    code, out = await run_cli(connector.env, "history", "tls-7", "--no-store", "--json")
    assert code == 0, out
    assert orjson.loads(out)["applied"]["elasticpath"]["version"] == 1, out

    code, out = await run_cli(connector.env, "replay", "--from", "failures")
    assert code == 0 and "dry run: 0 events" in out, out
    code, out = await run_cli(connector.env, "replay", "--from", "dlq")
    assert code == 0 and "dry run: 0 events" in out, out

    # pause and resume write the control topic; the connector's control reader applies them and its
    # status publisher reports them: both over TLS as well.
    code, out = await run_cli(connector.env, "pause", "elasticpath", "--reason", "tls test")
    assert code == 0, out

    async def paused_in_status(expected: bool) -> bool:
        documents = await replicas(connector.env)
        paused = any(
            "elasticpath" in orjson.dumps(p).decode() for d in documents for p in d.get("pauses", [])
        )
        return bool(documents) and paused is expected

    await connector.wait_until(lambda: paused_in_status(True), 20, "the pause in `order-sync status`")
    code, out = await run_cli(connector.env, "resume", "elasticpath")
    assert code == 0, out
    await connector.wait_until(lambda: paused_in_status(False), 20, "the resume in `order-sync status`")
    code, out = await run_cli(connector.env, "status")
    assert code == 0 and "order-sync replicas" in out, out

    log = connector.log_path.read_text(errors="replace")
    assert KEY_PASSWORD not in log
    assert "Unclosed" not in log


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ORDER_SYNC_")}


COMMANDS = [
    ["status"],
    ["produce", "{events}"],
    ["replay", "--from", "dlq"],
    ["history", "tls-1", "--no-store"],
    ["pause", "elasticpath", "--reason", "x"],
    ["resume", "elasticpath"],
]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong CA", "certificate verify failed: "),
        ("no client certificate", "the broker refused the TLS handshake (no client certificate?): "),
    ],
)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.slow
async def test_a_tls_failure_is_one_line_naming_the_server_and_the_failure(
    mtls: MutualTls, tmp_path: Path, command: list[str], case: str, expected: str
) -> None:
    events = tmp_path / "events.json"
    events.write_bytes(orjson.dumps(make_event("tls-1", 1)))
    security = (
        mtls.env(KAFKA__SSL_CAFILE=str(mtls.other_ca))
        if case == "wrong CA"
        else mtls.env(KAFKA__SSL_CERTFILE=None, KAFKA__SSL_KEYFILE=None, KAFKA__SSL_KEY_PASSWORD=None)
    )
    env = {
        **base_env(),
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": mtls.bootstrap,
        **{f"ORDER_SYNC_{k}": v for k, v in security.items()},
    }
    args = [arg.format(events=events) for arg in command]
    code, out = await run_cli(env, *args)
    lines = out.strip().splitlines()
    assert code == 2, out  # the commands' expected failures all exit 2 (README "Commands")
    assert len(lines) == 1, out
    assert lines[0].startswith(f"order-sync {command[0]}: cannot reach Kafka at {mtls.bootstrap} over TLS: ")
    assert expected in lines[0], lines[0]
    assert "Traceback" not in out and "Unclosed" not in out
    assert KEY_PASSWORD not in out


@pytest.mark.slow
async def test_the_line_names_the_bootstrap_server_whose_handshake_failed(mtls: MutualTls) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = {
        **base_env(),
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": f"{closed},{mtls.bootstrap}",
        **{f"ORDER_SYNC_{k}": v for k, v in mtls.env(KAFKA__SSL_CAFILE=str(mtls.other_ca)).items()},
    }
    code, out = await run_cli(env, "status")
    assert code == 2 and len(out.strip().splitlines()) == 1, out
    assert out.startswith(
        f"order-sync status: cannot reach Kafka at {mtls.bootstrap} over TLS: certificate verify failed: "
    ), out


async def test_run_with_a_wrong_ca_is_not_ready_and_says_why_once(
    mtls: MutualTls, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    topics = Topics("orders.changed.x", "succeeded.x", "failed.x", "dlq.x", 1)
    connector = connectors(
        connector_env(
            suite,
            topics,
            mtls.bootstrap,
            tmp_path / "store.db",
            "tls-wrong-ca",
            LOG_LEVEL="DEBUG",
            **ONE_PLATFORM,
            **mtls.env(KAFKA__SSL_CAFILE=str(mtls.other_ca)),
        )
    )
    line = f"cannot reach Kafka at {mtls.bootstrap} over TLS: certificate verify failed: "

    def log_lines() -> list[dict[str, Any]]:
        return [
            orjson.loads(text)
            for text in connector.log_path.read_text(errors="replace").splitlines()
            if text.startswith("{")
        ]

    def tls_lines(level: str) -> list[str]:
        return [r["message"] for r in log_lines() if r["level"] == level and line in r["message"]]

    await connector.wait_until(lambda: len(tls_lines("debug")) >= 2, 20, "three start-up attempts")
    assert len(tls_lines("error")) == 1, tls_lines("error")
    health, _ = await connector.get("/healthz")
    ready, _ = await connector.get("/readyz")
    assert (health, ready) == (200, 503)
    assert KEY_PASSWORD not in connector.log_path.read_text(errors="replace")


# --- SASL and the settings: no broker here speaks SASL; the options must reach aiokafka as given ---


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_every_sasl_option_reaches_aiokafka_unchanged(protocol: str, mechanism: str) -> None:
    settings = load_settings(
        environ={
            "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": "kafka-1:9094,kafka-2:9094",
            "ORDER_SYNC_KAFKA__SECURITY_PROTOCOL": protocol,
            "ORDER_SYNC_KAFKA__SASL_MECHANISM": mechanism,
            "ORDER_SYNC_KAFKA__SASL_USERNAME": "order-sync",
            "ORDER_SYNC_KAFKA__SASL_PASSWORD": "sasl-s3cret",
        }
    ).kafka
    assert "sasl-s3cret" not in repr(settings)
    options = client_options(settings)
    assert options["bootstrap_servers"] == "kafka-1:9094,kafka-2:9094"
    assert options["security_protocol"] == protocol
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "order-sync"
    assert options["sasl_plain_password"] == "sasl-s3cret"
    assert ("ssl_context" in options) is (protocol == "SASL_SSL")
    consumer = AIOKafkaConsumer(**consumer_options(settings))
    producer = AIOKafkaProducer(**producer_options(settings))
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        assert consumer._client._sasl_mechanism == mechanism
        assert producer.client._sasl_plain_password == "sasl-s3cret"
        assert admin._client._sasl_plain_username == "order-sync"
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()


async def test_oauthbearer_reads_its_token_file_at_every_authentication(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    settings = load_settings(
        environ={
            "ORDER_SYNC_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "ORDER_SYNC_KAFKA__SASL_MECHANISM": "OAUTHBEARER",
            "ORDER_SYNC_KAFKA__SASL_OAUTH_TOKEN_FILE": str(token),
        }
    ).kafka
    options = client_options(settings)
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    provider = options["sasl_oauth_token_provider"]
    assert isinstance(provider, TokenFile)
    assert await provider.token() == "first-token"
    token.write_text("renewed-token\n")
    assert await provider.token() == "renewed-token"
    consumer = AIOKafkaConsumer(**consumer_options(settings))
    producer = AIOKafkaProducer(**producer_options(settings))
    try:
        for client in (consumer._client, producer.client):
            assert client._sasl_mechanism == "OAUTHBEARER"
            assert isinstance(client._sasl_oauth_token_provider, TokenFile)
            assert client._sasl_oauth_token_provider.path == token
    finally:
        await consumer.stop()
        await producer.stop()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SECURITY_PROTOCOL": "SASL_SSL"}, "sasl_mechanism PLAIN needs sasl_username and sasl_password"),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u"},
            "sasl_mechanism SCRAM-SHA-512 needs sasl_username and sasl_password",
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "OAUTHBEARER"},
            "OAUTHBEARER needs sasl_oauth_token_file",
        ),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI"}, "sasl_mechanism"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_KEYFILE": "/k.pem"}, "need ssl_certfile"),
    ],
)
def test_incomplete_security_settings_stop_start_up_in_one_line(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={f"ORDER_SYNC_KAFKA__{k}": v for k, v in environ.items()})
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_client_certificate_settings_and_their_files(pki: dict[str, Path], tmp_path: Path) -> None:
    password_file = tmp_path / "key-password"
    password_file.write_text(KEY_PASSWORD + "\n")
    environ = {
        "ORDER_SYNC_KAFKA__SECURITY_PROTOCOL": "SSL",
        "ORDER_SYNC_KAFKA__SSL_CAFILE": str(pki["ca"]),
        "ORDER_SYNC_KAFKA__SSL_CERTFILE": str(pki["client_cert"]),
        "ORDER_SYNC_KAFKA__SSL_KEYFILE": str(pki["client_key"]),
        "ORDER_SYNC_KAFKA__SSL_KEY_PASSWORD_FILE": str(password_file),
    }
    settings = load_settings(environ=environ).kafka
    assert settings.ssl_key_password is not None
    assert settings.ssl_key_password.get_secret_value() == KEY_PASSWORD
    assert KEY_PASSWORD not in repr(settings)
    assert client_options(settings)["ssl_context"].verify_mode.name == "CERT_REQUIRED"

    wrong = {**environ, "ORDER_SYNC_KAFKA__SSL_KEY_PASSWORD": "not-it"}
    del wrong["ORDER_SYNC_KAFKA__SSL_KEY_PASSWORD_FILE"]
    with pytest.raises(ConfigError, match=r"kafka\.ssl_certfile: cannot load the client certificate") as bad:
        client_options(load_settings(environ=wrong).kafka)
    assert "not-it" not in str(bad.value)
    without = {k: v for k, v in environ.items() if "PASSWORD" not in k}
    with pytest.raises(ConfigError, match=r"kafka\.ssl_key_password: the private key \(.*\) is encrypted"):
        client_options(load_settings(environ=without).kafka)
    missing = {**without, "ORDER_SYNC_KAFKA__SSL_CERTFILE": str(tmp_path / "nowhere.pem")}
    with pytest.raises(ConfigError, match="No such file"):
        client_options(load_settings(environ=missing).kafka)


def test_the_chart_mounts_a_client_certificate_for_the_connector_and_keda() -> None:
    helm = pytest.importorskip(
        "helm_python", reason="helm-python-sdk is not installed (pip install -e '.[test]')"
    )
    from tests.deploy.deploy_support import CHART_DIR, FULL_VALUES

    values = {
        **FULL_VALUES,
        "kafka": {
            **FULL_VALUES["kafka"],
            "tls": {
                **FULL_VALUES["kafka"]["tls"],
                "clientSecret": {"name": "kafka-client", "passwordKey": "pw"},
            },
        },
    }
    with helm.Chart.load(os.fspath(CHART_DIR)) as chart:
        rendered = chart.render(values, name="order-sync", namespace="orders", is_install=True)
    manifests = [
        doc
        for path, text in rendered.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    config = next(
        m for m in manifests if m["kind"] == "ConfigMap" and "ORDER_SYNC_KAFKA__SSL_CAFILE" in m["data"]
    )
    env = {k: v for k, v in config["data"].items() if k.startswith("ORDER_SYNC_KAFKA__")}
    assert env["ORDER_SYNC_KAFKA__SSL_KEY_PASSWORD_FILE"] == "/etc/order-sync/kafka-client/pw"
    del env["ORDER_SYNC_KAFKA__SSL_KEY_PASSWORD_FILE"]  # read at load time; not on this machine
    kafka = load_settings(
        environ={**env, "ORDER_SYNC_KAFKA__SASL_USERNAME": "u", "ORDER_SYNC_KAFKA__SASL_PASSWORD": "p"}
    ).kafka
    assert (str(kafka.ssl_certfile), str(kafka.ssl_keyfile)) == (
        "/etc/order-sync/kafka-client/tls.crt",
        "/etc/order-sync/kafka-client/tls.key",
    )
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "kafka-client")
        assert volume["secret"]["secretName"] == "kafka-client"
        assert [i["key"] for i in volume["secret"]["items"]] == ["tls.crt", "tls.key", "pw"]
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["kafka-client"] == "/etc/order-sync/kafka-client"
    auth = next(m for m in manifests if m["kind"] == "TriggerAuthentication")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert {k: refs[k] for k in ("cert", "key", "keyPassword")} == {
        "cert": ("kafka-client", "tls.crt"),
        "key": ("kafka-client", "tls.key"),
        "keyPassword": ("kafka-client", "pw"),
    }


async def test_the_tls_files_are_read_once_in_a_thread_and_every_client_shares_them(
    pki: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Copies, removed once loaded: a client built afterwards (the control reader after a broker
    # outage, the status publisher) must not read them again on the event loop.
    files = {name: tmp_path / pki[name].name for name in ("ca", "client_cert", "client_key")}
    for name, copy in files.items():
        shutil.copyfile(pki[name], copy)
    settings = KafkaSettings(
        security_protocol="SSL",
        ssl_cafile=files["ca"],
        ssl_certfile=files["client_cert"],
        ssl_keyfile=files["client_key"],
        ssl_key_password=SecretStr(KEY_PASSWORD),
    )
    made_on: list[int] = []
    make = tls.ssl_context

    def recording(kafka: KafkaSettings) -> ssl.SSLContext:
        made_on.append(threading.get_ident())
        return make(kafka)

    monkeypatch.setattr(tls, "ssl_context", recording)
    await tls.load_ssl_context(settings)
    await tls.load_ssl_context(settings)
    assert len(made_on) == 1 and made_on[0] != threading.get_ident()
    for copy in files.values():
        copy.unlink()
    shared = client_options(settings)["ssl_context"]
    assert shared is producer_options(settings)["ssl_context"] is consumer_options(settings)["ssl_context"]
    assert shared.verify_mode is ssl.CERT_REQUIRED and len(made_on) == 1
