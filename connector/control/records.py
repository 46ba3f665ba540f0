"""The control topic's records: a pause or a resume of one target, keyed by the target.

The topic is compacted: per target only the newest record counts, so a resume is a record too
(with who and when), never a deletion. A record that does not parse is not a command.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from connector.models import CONNECTION_NAME_PATTERN, Platform


class ControlAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"


class ControlRecordError(ValueError):
    """A control record that is not a command: logged and ignored."""


class Target(BaseModel):
    """A platform, or one connection of it (`platform/connection`)."""

    model_config = ConfigDict(frozen=True)

    platform: Platform
    connection: str | None = Field(default=None, pattern=CONNECTION_NAME_PATTERN)

    @classmethod
    def parse(cls, text: str) -> Target:
        platform, _, connection = text.strip().lower().partition("/")
        try:
            return cls(platform=Platform(platform), connection=connection or None)
        except (ValueError, ValidationError):
            raise ControlRecordError(
                f"not a target: {text!r} (a platform, {', '.join(Platform)}, or platform/connection)"
            ) from None

    def __str__(self) -> str:
        return self.platform.value if self.connection is None else f"{self.platform.value}/{self.connection}"


class ControlRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    action: ControlAction
    target: str
    #: Who: the OS user of `order-sync pause`, or its `--by`.
    by: str = Field(min_length=1, max_length=200)
    at: AwareDatetime
    reason: str | None = Field(default=None, max_length=2000)
    #: A pause ends by itself at this time.
    until: AwareDatetime | None = None

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def decode(cls, key: bytes | None, value: bytes | None) -> tuple[Target, ControlRecord]:
        """The record's target and command; `ControlRecordError` saying why it is none."""
        if value is None:
            raise ControlRecordError("a tombstone")
        try:
            record = cls.model_validate_json(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "value"
            raise ControlRecordError(f"{where}: {first['msg']}") from None
        target = Target.parse(record.target)
        if key is not None and key.decode("utf-8", "replace") != str(target):
            raise ControlRecordError(f"key {key!r} does not name its target {str(target)!r}")
        if record.action is ControlAction.PAUSE and not record.reason:
            raise ControlRecordError("a pause without a reason")
        return target, record


def pause_record(target: Target, by: str, at: datetime, reason: str, until: datetime | None) -> ControlRecord:
    return ControlRecord(
        action=ControlAction.PAUSE, target=str(target), by=by, at=at, reason=reason, until=until
    )


def resume_record(target: Target, by: str, at: datetime) -> ControlRecord:
    return ControlRecord(action=ControlAction.RESUME, target=str(target), by=by, at=at)
