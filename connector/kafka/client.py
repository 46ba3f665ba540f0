"""aiokafka client options from settings (security, timeouts), shared by consumer and producer,
and the boundary where the commands' aiokafka errors become the connector's own."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from connector.config import KafkaSettings
from connector.errors import KafkaUnavailableError


@contextlib.contextmanager
def kafka_errors(bootstrap_servers: str) -> Iterator[None]:
    """Translate aiokafka's errors into `KafkaUnavailableError` (a command's one-line failure)."""
    try:
        yield
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc


async def create_topics(bootstrap_servers: str, names: list[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet (replication factor 1: tests, the demo)."""
    with kafka_errors(bootstrap_servers):
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


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
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


def consumer_options(settings: KafkaSettings) -> dict[str, Any]:
    # One partition's worth, and no more, per fetch response: every pipeline has a consumer of its
    # own, each buffering what it fetched (aiokafka's default allows 50 MiB a response).
    fetch_bytes = max(1_048_576, settings.max_message_bytes + 1024)
    return {
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
