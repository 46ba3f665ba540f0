"""Bearer tokens for the simulated token endpoints: issued with a lifetime, expirable on demand."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class IssuedToken:
    value: str
    lifetime_s: float
    issued_at: datetime
    #: Monotonic time from which the token is refused.
    expires_at: float

    @property
    def expires_on(self) -> datetime:
        return self.issued_at + timedelta(seconds=self.lifetime_s)

    @property
    def lifetime_number(self) -> int | float:
        """The lifetime as token endpoints spell `expires_in`: whole seconds when it is whole."""
        return int(self.lifetime_s) if float(self.lifetime_s).is_integer() else self.lifetime_s


class TokenIssuer:
    def __init__(self, lifetime_s: float = 3600.0) -> None:
        #: Lifetime of tokens issued from now on; tests may change it at any time.
        self.lifetime_s = lifetime_s
        self.issued = 0
        self._valid_until: dict[str, float] = {}

    def issue(self) -> IssuedToken:
        now = time.monotonic()
        # Keep the table bounded over a long run: forget tokens that can no longer be used.
        self._valid_until = {v: until for v, until in self._valid_until.items() if until > now}
        token = IssuedToken(
            secrets.token_urlsafe(24), self.lifetime_s, datetime.now(UTC), now + self.lifetime_s
        )
        self._valid_until[token.value] = token.expires_at
        self.issued += 1
        return token

    def is_valid(self, value: str) -> bool:
        until = self._valid_until.get(value)
        return until is not None and time.monotonic() < until

    def bearer_is_valid(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.is_valid(value.strip())

    def expire_all(self) -> None:
        """Forced expiry: every token issued so far is refused from now on."""
        self._valid_until.clear()
