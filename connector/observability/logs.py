"""Structured logs: one JSON object per line on stderr, with secrets masked."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from connector.observability.redaction import Redactor

#: Context fields copied from `extra=` into every line that has them.
CONTEXT_FIELDS = (
    "event_id",
    "order_number",
    "platform",
    "connection",
    "pipeline",
    "outcome",
    "status_code",
    "attempts",
    "partition",
    "offset",
    "trace_id",
)


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                line[field] = str(value) if not isinstance(value, int | float) else value
        for field, value in record.__dict__.get("fields", {}).items():
            line[field] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        text = orjson.dumps(line, default=str).decode("utf-8")
        return self._redactor.redact(text)


def configure_logging(level: str, redactor: Redactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every connection hiccup at ERROR; its state is visible through our own lines.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
