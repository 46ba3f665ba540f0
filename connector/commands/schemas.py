"""JSON Schemas of the wire models and the AsyncAPI document over them, written to `schemas/` and
checked for staleness in CI."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel

from connector.commands import asyncapi
from connector.models import OrderChangedEvent, OrderSyncResult

SCHEMAS: dict[str, type[BaseModel]] = {
    asyncapi.EVENT_SCHEMA: OrderChangedEvent,
    asyncapi.RESULT_SCHEMA: OrderSyncResult,
}


def render(model: type[BaseModel], name: str) -> bytes:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": name}
    schema.update(model.model_json_schema(mode="serialization"))
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _files() -> dict[str, bytes]:
    files = {name: render(model, name) for name, model in SCHEMAS.items()}
    files[asyncapi.NAME] = asyncapi.render()
    return files


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in _files().items():
        path = directory / name
        path.write_bytes(content)
        written.append(path)
    return written


def check_schemas(directory: Path) -> list[str]:
    """Names of the files that are missing or differ from what the models give."""
    stale = []
    for name, content in _files().items():
        path = directory / name
        if not path.exists() or path.read_bytes() != content:
            stale.append(name)
    return stale
