"""JSON Schemas of the wire models, written to `schemas/` and checked for staleness in CI."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel

from connector.models import OrderChangedEvent, OrderSyncResult

SCHEMAS: dict[str, type[BaseModel]] = {
    "order-changed.v1.json": OrderChangedEvent,
    "order-sync-result.v1.json": OrderSyncResult,
}


def render(model: type[BaseModel], name: str) -> bytes:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": name}
    schema.update(model.model_json_schema(mode="serialization"))
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = directory / name
        path.write_bytes(render(model, name))
        written.append(path)
    return written


def check_schemas(directory: Path) -> list[str]:
    """Names of the schema files that are missing or differ from the models."""
    stale = []
    for name, model in SCHEMAS.items():
        path = directory / name
        if not path.exists() or path.read_bytes() != render(model, name):
            stale.append(name)
    return stale
