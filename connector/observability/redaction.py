"""Keeps credentials out of logs, result events, DLQ headers and `validate` output."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, SecretStr

MASK = "***"
EXCERPT_LIMIT = 1024

_PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(basic|bearer)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)([\"']?(?:access_token|refresh_token|client_secret|password|api_secret|api_token|token)"
        r"[\"']?\s*[:=]\s*[\"']?)([^\"'&\s,}]+)"
    ),
    re.compile(r"(?i)(://[^:/@\s]+:)([^@\s]+)(@)"),
]


def secrets_of(settings: BaseModel) -> list[str]:
    """Every SecretStr value in a settings tree."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if secret:
                found.append(secret)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    return found


class Redactor:
    """Masks known secret values and anything shaped like a credential."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole; very short ones are ignored.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if len(secret) >= 4 and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)} {MASK}", text)
        text = _PATTERNS[1].sub(lambda m: f"{m.group(1)} {MASK}", text)
        text = _PATTERNS[2].sub(lambda m: f"{m.group(1)}{MASK}", text)
        return _PATTERNS[3].sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)

    def excerpt(self, text: str, limit: int = EXCERPT_LIMIT) -> str:
        """A redacted excerpt of at most `limit` bytes of UTF-8."""
        clean = self.redact(text)
        encoded = clean.encode("utf-8")
        if len(encoded) <= limit:
            return clean
        return encoded[:limit].decode("utf-8", "ignore")
