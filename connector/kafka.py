"""aiokafka client options from settings (security, timeouts), shared by consumer and producer."""

from __future__ import annotations

import ssl
from typing import Any

from connector.config import KafkaSettings


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
    return {
        **client_options(settings),
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_partition_fetch_bytes": max(1_048_576, settings.max_message_bytes + 1024),
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "retry_backoff_ms": 200,
    }
