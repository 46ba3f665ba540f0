"""Wire models: the canonical "order changed" event and the per-delivery result event.

The shapes are the external contract (`schemas/`, which `order-sync schemas` writes from them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints


class Platform(StrEnum):
    """A commerce platform that holds copies of orders."""

    VUCUSTOM = "vucustom"
    SELLERCLOUD = "sellercloud"
    ELASTICPATH = "elasticpath"
    VENTMERE = "ventmere"


class OrderStatus(StrEnum):
    OPEN = "open"
    ON_HOLD = "on_hold"
    CANCELLED = "cancelled"
    FULFILLED = "fulfilled"


class Outcome(StrEnum):
    """How one delivery (one event to one platform) ended."""

    #: The platform answered 2xx.
    APPLIED = "applied"
    #: The platform already has this order at the same or a newer version; nothing was sent.
    SKIPPED_STALE = "skipped_stale"
    #: The platform refused the request (4xx); retrying cannot help.
    REJECTED = "rejected"
    #: Retryable failures until MAX_ATTEMPTS or RETRY_BUDGET_S ran out.
    EXHAUSTED = "exhausted"
    #: The event lacks what this platform needs (an id, a required field); nothing was sent.
    UNMAPPABLE = "unmappable"
    #: A newer version of the order was waiting for the same platform and was sent instead
    #: (SUPERSEDE_QUEUED_VERSIONS); nothing was sent for this one.
    SUPERSEDED = "superseded"

    @property
    def succeeded(self) -> bool:
        return self in (Outcome.APPLIED, Outcome.SKIPPED_STALE, Outcome.SUPERSEDED)


class ErrorCategory(StrEnum):
    """Why a delivery failed, as carried in a failure result's `error.category`."""

    CLIENT_ERROR = "client_error"
    AUTH = "auth"
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RETRY_BUDGET = "retry_budget"
    MAPPING = "mapping"


def to_rfc3339(moment: datetime) -> str:
    """UTC with millisecond precision and a `Z`, the form every platform accepts."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_now_rfc3339() -> str:
    """`to_rfc3339(utc_now())`, at a quarter of the cost (once per result)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


#: The connection a target means when it names none: the platform's own keys (README "Connections").
DEFAULT_CONNECTION = "default"
#: What a connection may be called (README "Connections").
CONNECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

_Text = Annotated[str, StringConstraints(max_length=4096)]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Money = Annotated[str, StringConstraints(pattern=r"^-?\d{1,15}(\.\d{1,6})?$")]


class _Model(BaseModel):
    # Additive fields from newer OMS builds are tolerated within schema v1.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Address(_Model):
    first_name: _Text | None = None
    middle_name: _Text | None = None
    last_name: _Text | None = None
    company: _Text | None = None
    line1: _Text | None = None
    line2: _Text | None = None
    city: _Text | None = None
    state: _Text | None = None
    region: _Text | None = None
    postal_code: _Text | None = None
    country: _Text | None = None
    phone: _Text | None = None
    email: _Text | None = None
    fax: _Text | None = None
    instructions: _Text | None = None


class ShipMethod(_Model):
    carrier: _Text | None = None
    code: _Text | None = None
    description: _Text | None = None


class OrderLine(_Model):
    line_id: _Id
    sku: _Text | None = None
    product_id: _Text | None = None
    quantity: int = Field(ge=0)
    unit_price: Money
    requested_date: AwareDatetime | None = None
    tags: list[_Text] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)


class Attachment(_Model):
    file_name: _Text
    path: _Text


class Order(_Model):
    order_number: _Id
    version: int = Field(ge=0, le=2**63 - 1)
    status: OrderStatus
    order_date: AwareDatetime
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    customer_note: _Text | None = None
    purchase_order_number: _Text | None = None
    sales_order_number: _Text | None = None
    external_ref: _Text | None = None
    ship_method: ShipMethod | None = None
    ship_by_date: AwareDatetime | None = None
    deliver_by_date: AwareDatetime | None = None
    shipping_address: Address | None = None
    billing_address: Address | None = None
    lines: list[OrderLine] = Field(default_factory=list, max_length=10_000)
    tags: list[_Text] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)


class _Target(_Model):
    #: The account on the platform that holds the order; absent means `default`.
    connection: _Id | None = None


class VuCustomTarget(_Target):
    id: int | None = None
    order_number: _Id | None = None


class SellercloudTarget(_Target):
    order_id: int | None = None
    company_id: int | None = None


class ElasticPathTarget(_Target):
    order_id: _Id | None = None


class VentmereTarget(_Target):
    order_id: _Id | None = None
    account_id: _Id | None = None


class Targets(_Model):
    """Where the order lives. A platform absent here holds no copy of the order."""

    vucustom: VuCustomTarget | None = None
    sellercloud: SellercloudTarget | None = None
    elasticpath: ElasticPathTarget | None = None
    ventmere: VentmereTarget | None = None

    def platforms(self) -> list[Platform]:
        return [p for p in Platform if getattr(self, p.value) is not None]

    def includes(self, platform: Platform) -> bool:
        """The event targets `platform` (it is delivered there when that platform is enabled)."""
        return getattr(self, platform.value) is not None

    def connection_of(self, platform: Platform) -> str:
        """The connection the target on `platform` names, lower case (names match case-insensitively)."""
        target: _Target | None = getattr(self, platform.value)
        if target is None or target.connection is None:
            return DEFAULT_CONNECTION
        return target.connection.lower()


class OrderChangedEvent(_Model):
    """The canonical "order changed" event, schema version 1."""

    event_id: _Id
    event_type: Literal["order.changed"]
    schema_version: Literal[1]
    occurred_at: AwareDatetime
    order: Order
    targets: Targets
    #: Set by `order-sync replay`: the event_id this event re-drives.
    replay_of: _Id | None = None


class ResultError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: ErrorCategory
    message: str
    #: At most 1 KiB of the platform's answer, with credentials removed.
    response_excerpt: str | None = None


class OrderSyncResult(BaseModel):
    """One delivery's outcome, published to the success or failure topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    result_id: str
    event_id: str
    order_number: str
    order_version: int
    platform: Platform
    outcome: Outcome
    #: The account on the platform the delivery went to (or was meant for).
    connection: str = DEFAULT_CONNECTION
    status_code: int | None
    attempts: int
    duration_ms: float
    error: ResultError | None
    completed_at: str = Field(description="RFC 3339, UTC")

    @staticmethod
    def result_id_for(event_id: str, platform: Platform) -> str:
        return f"{event_id}:{platform.value}"


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input record is: carried as `source.*` headers on its results and DLQ copies, so any
    of them leads back to the exact record (README "Kafka messages")."""

    topic: str
    partition: int
    offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("source.topic", self.topic.encode("utf-8")),
            ("source.partition", str(self.partition).encode()),
            ("source.offset", str(self.offset).encode()),
        ]

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> Source | None:
        """The source named by a record's headers; None when they do not name one completely."""
        found = {name: value for name, value in headers if name.startswith("source.")}
        try:
            return cls(
                found["source.topic"].decode("utf-8"),
                int(found["source.partition"]),
                int(found["source.offset"]),
            )
        except (KeyError, ValueError):
            return None
