"""Issue 6: distinctive secrets never appear in logs, result events, DLQ records or `validate` output."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from connector.devtools.broker import EmbeddedBroker
from connector.devtools.simulators.server import SimulatorSuite
from tests.support.events import encode, make_event
from tests.support.kafka import TopicReader, Topics, produce
from tests.support.process import ConnectorProcess

StartConnector = Callable[[dict[str, str]], ConnectorProcess]
ACCOUNT = "1ac48942-405a-4841-a7d8-708f50dbe1ad"
SECRETS = {
    "vucustom": "vu-SECRET-111",
    "sellercloud": "pw-SECRET-123",
    "elasticpath": "cs-SECRET-456",
    "ventmere": "tok-SECRET-789",
    "sasl": "sasl-SECRET-000",
}


def targets(n: int) -> dict[str, dict[str, object]]:
    return {
        "vucustom": {"id": n},
        "sellercloud": {"order_id": n, "company_id": 1},
        "elasticpath": {"order_id": str(uuid.UUID(int=n))},
        "ventmere": {"order_id": f"vm-{n}", "account_id": ACCOUNT},
    }


async def test_no_secret_leaks_anywhere(
    broker: EmbeddedBroker, topics: Topics, suite: SimulatorSuite, connectors: StartConnector, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    suite.vucustom.api_secret = SECRETS["vucustom"]
    suite.sellercloud.password = SECRETS["sellercloud"]
    suite.ventmere.api_token = SECRETS["ventmere"]
    # Elastic Path is configured with a secret it does not know: every token request is refused.
    suite.elasticpath.client_secret = "the-right-one"
    suite.sellercloud.tokens.lifetime_s = 1.0
    env = {
        **topics.env("redaction"),
        **suite.connector_env(),
        "ORDER_SYNC_PLATFORMS__ELASTICPATH__CLIENT_SECRET": SECRETS["elasticpath"],
        "ORDER_SYNC_PLATFORMS__SELLERCLOUD__TOKEN_REFRESH_MARGIN_S": "0",
        "ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "ORDER_SYNC_IDEMPOTENCY__URL": f"sqlite:///{tmp_path / 'store.db'}",
        "ORDER_SYNC_LOG_LEVEL": "DEBUG",
    }
    messages = [(f"o{n}".encode(), encode(make_event(f"o{n}", 1, targets(n)))) for n in range(30)]
    messages.append((b"bad", b'{"password": "' + SECRETS["sellercloud"].encode() + b'"'))
    connector = connectors(env)
    await connector.wait_ready()
    await produce(bootstrap, topics.input, messages[:15])
    async with TopicReader(bootstrap, topics.success, topics.failure, topics.dlq) as reader:
        await reader.wait_for(lambda r: len(r.records) >= 60, 60, "first half")
        suite.expire_tokens()  # the next Sellercloud requests get 401 and refresh
        await produce(bootstrap, topics.input, messages[15:])
        await reader.wait_for(lambda r: len(r.records) >= 121, 60, "every result and the DLQ record")
        records = list(reader.records)
    connector.terminate()
    assert await connector.wait_exit(30) == 0

    failures = [r.json() for r in records if r.topic == topics.failure]
    assert {f["platform"] for f in failures} == {"elasticpath"}, "only the misconfigured platform fails"
    assert all(f["error"]["category"] == "auth" for f in failures)
    assert suite.sellercloud.tokens.issued >= 2, "the test must exercise a token refresh"

    validate_input = tmp_path / "events.jsonl"
    validate_input.write_bytes(b"\n".join(value for _, value in messages[:3]))
    validate = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("order-sync")),
        "validate",
        str(validate_input),
        env={**connector.env, "ORDER_SYNC_KAFKA__SASL_PASSWORD": SECRETS["sasl"]},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    validate_out, validate_err = await validate.communicate()
    assert validate.returncode == 0, validate_err

    haystacks: dict[str, bytes] = {
        "log": connector.log_path.read_bytes(),
        "validate": validate_out + validate_err,
    }
    for r in records:
        # A DLQ value is the producer's bytes, copied verbatim by contract; its headers are ours.
        value = b"" if r.topic == topics.dlq else (r.value or b"")
        haystacks[f"{r.topic}@{r.offset}"] = value + orjson.dumps(r.headers)
    issued_tokens = list(suite.sellercloud.tokens._valid_until) + list(suite.elasticpath.tokens._valid_until)
    assert len(haystacks["log"]) > 10_000, "the log should have DEBUG lines to search"
    for where, text in haystacks.items():
        for name, secret in SECRETS.items():
            assert secret.encode() not in text, f"{name} secret found in {where}"
        for token in issued_tokens:
            assert token.encode() not in text, f"an access token was found in {where}"
