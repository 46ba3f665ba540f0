"""aiokafka client options from settings (security, timeouts), shared by every Kafka client, and the
boundary where aiokafka's errors become the connector's own: one line naming the bootstrap server
and, over TLS, what the handshake says (`tls.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from connector.config import KafkaSettings
from connector.errors import ConfigError, KafkaUnavailableError
from connector.kafka.tls import load_ssl_context, shared_ssl_context, tls_failure, uses_tls


async def tls_unreachable(settings: KafkaSettings) -> str | None:
    """`cannot reach Kafka at HOST:PORT over TLS: …` when a TLS handshake is what fails, else None."""
    if not uses_tls(settings):
        return None
    try:
        failure = await tls_failure(settings)
    except ConfigError:
        return None
    if failure is None:
        return None
    server, reason = failure
    return f"cannot reach Kafka at {server} over TLS: {reason}"


async def unreachable(kafka: KafkaSettings | str, exc: KafkaError) -> str:
    """The one line for a Kafka client that failed (`kafka`: the settings, or a plaintext bootstrap list)."""
    if isinstance(kafka, str):
        return f"cannot reach Kafka at {kafka}: {exc}"
    return await tls_unreachable(kafka) or f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}"


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()` after one turn of the loop: aiokafka 0.14 raises CancelledError when a consumer
    without a group stops before its background task first ran (a command that found nothing to read)."""
    await asyncio.sleep(0)
    await consumer.stop()


@contextlib.asynccontextmanager
async def kafka_errors(kafka: KafkaSettings | str) -> AsyncIterator[None]:
    """Translate aiokafka's errors into `KafkaUnavailableError` (a command's one-line failure). Its
    TLS files are read first, off the event loop (`load_ssl_context`)."""
    if isinstance(kafka, KafkaSettings):
        await load_ssl_context(kafka)
    try:
        yield
    except KafkaError as exc:
        raise KafkaUnavailableError(await unreachable(kafka, exc)) from exc


class StartRetries:
    """The log lines of start-up retries while Kafka cannot be reached. Each retry is a WARNING, as
    before; but a TLS failure (a certificate, a refused handshake) is one ERROR line naming it when it
    appears or changes, and DEBUG lines while it lasts: it will not mend by itself."""

    def __init__(self, settings: KafkaSettings, logger: logging.Logger, what: str = "") -> None:
        self._settings = settings
        self._log = logger
        self._what = what
        self._last: str | None = None

    async def failed(self, exc: KafkaError, delay: float, extra: dict[str, Any] | None = None) -> None:
        line = await tls_unreachable(self._settings)
        if line is None:
            self._last = None
            self._log.warning(
                "Kafka not reachable%s (%s); retrying in %.1fs", self._what, exc, delay, extra=extra
            )
        elif line != self._last:
            self._last = line
            self._log.error("%s; retrying (logged again when this changes)", line, extra=extra)
        else:
            self._log.debug("%s; retrying in %.1fs", line, delay, extra=extra)


async def create_topics(bootstrap_servers: str, names: list[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet (replication factor 1: tests, the demo)."""
    async with kafka_errors(bootstrap_servers):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        try:
            await admin.start()
            for name in names:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [NewTopic(name, num_partitions=partitions, replication_factor=1)]
                    )
        finally:
            await admin.close()


class TokenFile(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER: the access token in a file, read again at every authentication, so whatever
    renews it (a sidecar, a projected service-account token) only rewrites the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def token(self) -> str:
        # A file read, off the event loop (as every file and SQLite access of the connector).
        text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        return text.strip()


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Every Kafka client's connection and security options (README "Kafka security")."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if uses_tls(settings):
        options["ssl_context"] = shared_ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        mechanism = settings.sasl_mechanism or "PLAIN"
        options["sasl_mechanism"] = mechanism
        if mechanism == "OAUTHBEARER":
            assert settings.sasl_oauth_token_file is not None  # KafkaSettings checks it
            options["sasl_oauth_token_provider"] = TokenFile(settings.sasl_oauth_token_file)
        else:
            options["sasl_plain_username"] = settings.sasl_username
            options["sasl_plain_password"] = (
                settings.sasl_password.get_secret_value() if settings.sasl_password else None
            )
    return options


def producer_options(settings: KafkaSettings) -> dict[str, Any]:
    # Idempotent producers need InitProducerId, which not every Kafka-compatible broker offers;
    # results are deduplicated by result_id downstream instead.
    return {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 5,
        "request_timeout_ms": 30_000,
        "retry_backoff_ms": 200,
        # Large enough to copy to the DLQ any message the consumer can read (aiokafka's 1 MiB default
        # would refuse such a copy); the broker's message.max.bytes is the limit that counts.
        "max_request_size": settings.max_request_bytes,
    }


def consumer_options(settings: KafkaSettings, pipeline: str | None = None) -> dict[str, Any]:
    """A group consumer's options; `pipeline` names the consumer's pipeline (its static id's suffix)."""
    # One partition's worth, and no more, per fetch response: every pipeline has a consumer of its
    # own, each buffering what it fetched (aiokafka's default allows 50 MiB a response).
    fetch_bytes = max(1_048_576, settings.max_message_bytes + 1024)
    options: dict[str, Any] = {
        **client_options(settings),
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_partition_fetch_bytes": fetch_bytes,
        "fetch_max_bytes": fetch_bytes,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "retry_backoff_ms": 200,
    }
    if settings.group_instance_id is not None:
        # Static membership (KIP-345): one id per consumer, and each pipeline has a group of its own.
        # A static member sends no LeaveGroup when it stops: its partitions wait for it to come back
        # under the same id, or for its session to expire (README "Restarts and group membership").
        instance = settings.group_instance_id
        options["group_instance_id"] = instance if pipeline is None else f"{instance}.{pipeline}"
    return options
