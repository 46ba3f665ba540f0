"""aiokafka client options from settings (security, timeouts), shared by consumer and producer."""

from __future__ import annotations

import ssl
from typing import Any

from connector.config import KafkaSettings

#: The producer must be able to copy to the DLQ, byte for byte, any message the consumer can read,
#: oversize ones included (fetches return a record larger than the fetch size on its own). The
#: client's default 1 MiB check would refuse such a copy for ever and hold the partition's commits
#: behind it; the broker's own limit (message.max.bytes) is the one that counts.
PRODUCER_MAX_REQUEST_BYTES = 64 * 1024 * 1024


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
        "max_request_size": max(PRODUCER_MAX_REQUEST_BYTES, settings.max_message_bytes + 64 * 1024),
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
        "retry_backoff_ms": 200,
    }
