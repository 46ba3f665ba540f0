"""The settings tree (README "Configuration"): environment (`ORDER_SYNC_`, `__` nesting) over a YAML file.

Config is data: `load_settings` builds one `Settings` at start-up and it is passed down explicitly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from connector.errors import ConfigError
from connector.models import CONNECTION_NAME_PATTERN, DEFAULT_CONNECTION, Platform

ENV_PREFIX = "ORDER_SYNC_"
#: The pipeline that validates input and writes the DLQ; the others are named after their platform.
INTAKE_PIPELINE = "intake"
CONNECTION_NAME = re.compile(CONNECTION_NAME_PATTERN)
#: A secret key `K` may be given as `K_FILE`, a path whose content (trailing newline removed) is it.
SECRET_FILE_SUFFIX = "_file"


def read_secret_files(values: dict[str, Any], secret_keys: set[str]) -> dict[str, Any]:
    """`values` with each `{key}_file` of a secret key replaced by `key` and the file's content."""
    resolved = dict(values)
    for name in list(resolved):
        if not (isinstance(name, str) and name.lower().endswith(SECRET_FILE_SUFFIX)):
            continue
        key = name[: -len(SECRET_FILE_SUFFIX)].lower()
        if key not in secret_keys:
            continue
        path = resolved.pop(name)
        if key in resolved:
            raise ValueError(f"{key} and {name} are both given; give one")
        try:
            content = Path(str(path)).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
        resolved[key] = content.removesuffix("\n").removesuffix("\r")
    return resolved


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(
        default="localhost:9092", description="Kafka bootstrap servers, comma-separated."
    )
    group_id: str = Field(
        default="order-sync",
        description="Base of the consumer groups: the intake is GROUP_ID, each platform GROUP_ID.{platform}.",
    )
    input_topic: str = Field(
        default="orders.changed", description='Topic of canonical "order changed" events.'
    )
    success_topic: str = Field(
        default="orders.sync.succeeded", description="Results with outcome applied or skipped_stale."
    )
    failure_topic: str = Field(
        default="orders.sync.failed", description="Results with outcome rejected, exhausted or unmappable."
    )
    dlq_topic: str = Field(
        default="orders.changed.dlq",
        description="Undecodable, schema-invalid or conflicting input, copied byte for byte.",
    )
    control_topic: str = Field(
        default="orders.sync.control",
        description="Compacted topic of pause and resume records, read by every replica (README"
        ' "Operator controls").',
    )
    status_topic: str = Field(
        default="orders.sync.status",
        description="Compacted topic where each replica publishes its status (`order-sync status`).",
    )
    status_interval_s: float = Field(
        default=5.0, gt=0, description="How often each replica publishes its status (and on every change)."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description='PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (README "Kafka security").',
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = Field(
        default=None,
        description="SASL mechanism (with a SASL protocol): PLAIN (the default), SCRAM-SHA-256,"
        " SCRAM-SHA-512 (these three need SASL_USERNAME and SASL_PASSWORD) or OAUTHBEARER (needs"
        " SASL_OAUTH_TOKEN_FILE).",
    )
    sasl_username: str | None = Field(default=None, description="SASL username.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (secret).")
    sasl_oauth_token_file: Path | None = Field(
        default=None,
        description="OAUTHBEARER: a file holding the access token, read again at every authentication"
        " (whatever renews the token rewrites the file).",
    )
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle for SSL/SASL_SSL (unset: the system's CAs)."
    )
    ssl_certfile: Path | None = Field(
        default=None,
        description="Client certificate (PEM; may hold the key too) for mutual TLS with SSL/SASL_SSL.",
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="Private key (PEM) of SSL_CERTFILE, when not in that file."
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted private key (secret)."
    )
    session_timeout_ms: int = Field(default=30_000, ge=1_000, description="Kafka consumer session timeout.")
    heartbeat_interval_ms: int = Field(
        default=3_000, ge=100, description="Kafka consumer heartbeat interval."
    )
    group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Static group membership (KIP-345): this replica's own stable id, unique among"
        " the replicas (the chart can set the pod's name); each pipeline's consumer joins its group as"
        " `{GROUP_INSTANCE_ID}.{pipeline}`. Unset: dynamic membership. Trade-offs in README"
        ' "Restarts and group membership".',
    )
    commit_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often completed offsets are committed (also on revoke and shutdown).",
    )
    max_poll_records: int = Field(
        default=500,
        ge=1,
        description="Most records taken from one fetch (never more than the free in-flight capacity).",
    )
    max_message_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Upper bound on one input message; larger values go to the DLQ (reason `decode`).",
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        description="Longest a fetch waits for data; brokers that hold fetches for it add this to latency.",
    )
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest record the producer sends; a DLQ copy beyond it is published without its value.",
    )
    lag_refresh_s: float = Field(
        default=10.0, gt=0, description="How often order_sync_consumer_lag is refreshed."
    )
    rebalance_drain_s: float = Field(
        default=10.0,
        ge=0,
        description="On revocation, how long those partitions' in-flight work may finish.",
    )

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return read_secret_files(values, {"sasl_password", "ssl_key_password"})
        return values

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        if (self.ssl_keyfile or self.ssl_key_password) and not self.ssl_certfile:
            raise ValueError("ssl_keyfile and ssl_key_password need ssl_certfile (the client certificate)")
        if self.security_protocol.startswith("SASL"):
            mechanism = self.sasl_mechanism or "PLAIN"
            if mechanism == "OAUTHBEARER":
                if self.sasl_oauth_token_file is None:
                    raise ValueError("sasl_mechanism OAUTHBEARER needs sasl_oauth_token_file")
            elif not (self.sasl_username and self.sasl_password):
                raise ValueError(f"sasl_mechanism {mechanism} needs sasl_username and sasl_password")
        return self


class IdempotencySettings(_Section):
    url: SecretStr = Field(
        default=SecretStr("sqlite:///order-sync.db"),
        description="Idempotency store: sqlite:///path, redis://host:port/db, postgresql://… (secret).",
    )
    retention_hours: float = Field(
        default=168, gt=0, description="Delivery and event records older than this are purged."
    )
    purge_interval_s: float = Field(default=300, gt=0, description="How often the retention purge runs.")
    purge_batch: int = Field(default=1000, ge=1, description="Most records deleted per purge pass.")
    claim_lease_s: float = Field(
        default=60,
        gt=0,
        description="A claim older than this is presumed abandoned by a dead replica and may be taken over.",
    )
    timeout_s: float = Field(default=5, gt=0, description="Timeout of one store operation.")


class HttpSettings(_Section):
    host: str = Field(default="0.0.0.0", description="Address of the /metrics, /healthz and /readyz server.")
    port: int = Field(
        default=8000, ge=0, le=65535, description="Port of the /metrics, /healthz and /readyz server."
    )


class PlatformSettings(_Section):
    """Settings shared by every platform; subclasses add credentials and defaults."""

    enabled: bool | None = Field(
        default=None,
        description="Deliver to this platform; default true when BASE_URL or credentials are set.",
    )
    base_url: str | None = Field(default=None, description="API base URL.")
    auth_refresh_on: list[int] = Field(
        default_factory=lambda: [401],
        description='Statuses meaning "token expired" for a token flow: refresh once and retry.',
    )
    max_concurrency: int = Field(default=32, ge=1, description="Requests in flight to this platform.")
    rate_limit_rps: float = Field(
        default=0, ge=0, description="Token-bucket rate limit in requests per second; 0 is unlimited."
    )
    rate_limit_burst: float | None = Field(
        default=None,
        ge=1,
        description="Requests the token bucket lets through at once after a quiet spell; unset is one"
        " second's worth of RATE_LIMIT_RPS.",
    )
    supersede_queued_versions: bool = Field(
        default=False,
        description="Versions of one order waiting for this platform at once collapse to the newest;"
        " the older ones end superseded without a request (for full-state updates and scarce quotas).",
    )
    timeout_s: float = Field(default=10, gt=0, description="Timeout of one request.")
    max_attempts: int = Field(default=8, ge=1, description="Attempts per delivery before it is exhausted.")
    retry_budget_s: float = Field(
        default=300, gt=0, description="Total time one delivery may spend retrying."
    )
    backoff_base_s: float = Field(
        default=0.2, gt=0, description="First backoff cap (exponential, full jitter)."
    )
    backoff_max_s: float = Field(default=30, gt=0, description="Largest backoff between attempts.")
    circuit_failure_threshold: int = Field(
        default=10, ge=1, description="Consecutive retryable failures that open the circuit."
    )
    circuit_reset_s: float = Field(
        default=5, gt=0, description="How long an open circuit waits before letting one probe through."
    )
    connections: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="More accounts on this platform, as `…__CONNECTIONS__{CONN}__{KEY}`: any key above;"
        ' a key a connection leaves unset is the platform\'s (README "Connections").',
    )

    @classmethod
    def secret_keys(cls) -> set[str]:
        return {name for name, field in cls.model_fields.items() if field.annotation == SecretStr | None}

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return read_secret_files(values, cls.secret_keys())
        return values

    @model_validator(mode="after")
    def _connections_resolve(self) -> PlatformSettings:
        lowered: dict[str, dict[str, Any]] = {}
        for name, keys in self.connections.items():
            conn = name.lower()
            if conn == DEFAULT_CONNECTION:
                raise ValueError(f"connections.{name}: `default` is the platform's own keys")
            if not CONNECTION_NAME.fullmatch(conn):
                raise ValueError(f"connections.{name}: a connection is named [a-z0-9][a-z0-9-]{{0,62}}")
            if not isinstance(keys, dict):
                raise ValueError(f"connections.{name}: must hold a mapping of keys")
            lowered[conn] = {str(key).lower(): value for key, value in keys.items()}
            if "connections" in lowered[conn]:
                raise ValueError(f"connections.{name}: a connection has no connections of its own")
            try:
                self.for_connection(lowered[conn])
            except ValidationError as exc:
                first = exc.errors()[0]
                key = ".".join(str(part) for part in first["loc"]) or "?"
                message = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"connections.{conn}.{key}: {message}") from None
        self.connections = lowered
        return self

    def for_connection(self, keys: Mapping[str, Any]) -> PlatformSettings:
        """This platform's settings with a connection's `keys` over them (an unset key is the
        platform's). Raises pydantic's `ValidationError` for a bad key or value."""
        inherited = self.model_dump(exclude={"connections"}, exclude_unset=True)
        # The connection's own secret files first: its `password_file` stands in for the
        # platform's `password`, not beside it.
        own = read_secret_files(dict(keys), self.secret_keys())
        return type(self).model_validate({**inherited, **own})

    def credentials_given(self) -> bool:
        return False

    @property
    def is_enabled(self) -> bool:
        if self.enabled is not None:
            return self.enabled
        return "base_url" in self.model_fields_set or self.credentials_given()

    def resolved_base_url(self) -> str:
        if not self.base_url:
            raise ConfigError("base_url is required")
        return self.base_url.rstrip("/")


class VuCustomSettings(PlatformSettings):
    base_url: str | None = Field(default="https://os.vucustom.com", description="API base URL.")
    api_key: SecretStr | None = Field(default=None, description="Admin API key (HTTP Basic user; secret).")
    api_secret: SecretStr | None = Field(
        default=None, description="Admin API secret (HTTP Basic password; secret)."
    )

    def credentials_given(self) -> bool:
        return self.api_key is not None


class SellercloudSettings(PlatformSettings):
    #: Fills the default base URL `https://{server_id}.api.sellercloud.com/rest`.
    server_id: str | None = Field(
        default=None, description="Fills the default BASE_URL https://{server_id}.api.sellercloud.com/rest."
    )
    rate_limit_rps: float = Field(
        default=3,
        ge=0,
        description="Sellercloud's quota, 10,800 requests per hour per client IP, spread evenly.",
    )
    rate_limit_burst: float | None = Field(
        default=1,
        ge=1,
        description="No burst: at 3 requests per second the hourly quota leaves room for none.",
    )
    username: str | None = Field(default=None, description="User for the JWT from POST /api/token.")
    password: SecretStr | None = Field(default=None, description="Password for the JWT (secret).")
    token_refresh_margin_s: float = Field(
        default=60, ge=0, description="Tokens are renewed this long before they expire."
    )

    def credentials_given(self) -> bool:
        return self.username is not None

    def resolved_base_url(self) -> str:
        if not self.base_url and self.server_id:
            return f"https://{self.server_id}.api.sellercloud.com/rest"
        return super().resolved_base_url()


class ElasticPathSettings(PlatformSettings):
    base_url: str | None = Field(default="https://useast.api.elasticpath.com", description="API base URL.")
    rate_limit_rps: float = Field(
        default=100,
        ge=0,
        description="Elastic Path's published limit for production stores; development stores allow 25.",
    )
    client_id: str | None = Field(default=None, description="Client-credentials client id.")
    client_secret: SecretStr | None = Field(default=None, description="Client-credentials secret (secret).")
    token_refresh_margin_s: float = Field(
        default=60, ge=0, description="Tokens are renewed this long before they expire."
    )

    def credentials_given(self) -> bool:
        return self.client_id is not None


class VentmereSettings(PlatformSettings):
    base_url: str | None = Field(default=None, description="API base URL (required).")
    api_token: SecretStr | None = Field(default=None, description="Bearer token (secret).")
    organization_id: str | None = Field(default=None, description="Sent as X-S2-Organization.")

    def credentials_given(self) -> bool:
        return self.api_token is not None


class PlatformsSettings(_Section):
    vucustom: VuCustomSettings = Field(default_factory=VuCustomSettings)
    sellercloud: SellercloudSettings = Field(default_factory=SellercloudSettings)
    elasticpath: ElasticPathSettings = Field(default_factory=ElasticPathSettings)
    ventmere: VentmereSettings = Field(default_factory=VentmereSettings)

    def get(self, platform: Platform) -> PlatformSettings:
        settings: PlatformSettings = getattr(self, platform.value)
        return settings

    def enabled(self) -> list[Platform]:
        """Platforms whose own keys are enabled, or that have connections and are not switched off."""
        return [p for p in Platform if _platform_enabled(self.get(p))]


def _platform_enabled(settings: PlatformSettings) -> bool:
    if settings.enabled is not None:
        return settings.enabled
    return settings.is_enabled or bool(settings.connections)


def own_keys_given(settings: PlatformSettings) -> bool:
    return "base_url" in settings.model_fields_set or settings.credentials_given()


def default_connection_configured(settings: PlatformSettings, connections_elsewhere: bool) -> bool:
    """The platform's own keys make its `default` connection. A platform enabled with no keys of its
    own has none when its accounts are declared as connections (here or in the watched directory)."""
    if not own_keys_given(settings) and (connections_elsewhere or settings.connections):
        return False
    return settings.is_enabled


class Settings(BaseSettings):
    """Everything the connector reads from its environment, in one tree."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    idempotency: IdempotencySettings = Field(default_factory=IdempotencySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    platforms: PlatformsSettings = Field(default_factory=PlatformsSettings)
    max_inflight_events: int = Field(
        default=1000,
        ge=1,
        description="Events in flight per pipeline (intake, each platform); beyond it, its partitions pause.",
    )
    # NoDecode: the environment gives a comma-separated list, not JSON.
    pipelines: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Pipelines this process runs, comma-separated: intake and/or platform names;"
        " empty runs the intake and every enabled platform.",
    )
    shutdown_timeout_s: float = Field(
        default=30,
        gt=0,
        description="On SIGTERM, how long in-flight work may finish before the final commit.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of the JSON logs on stderr."
    )
    connections_dir: Path | None = Field(
        default=None,
        description='A watched directory of one YAML file per connection (README "Connections").',
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="Event loop of `order-sync run`: uvloop (cheaper per event) or asyncio's own.",
    )

    @field_validator("pipelines", mode="before")
    @classmethod
    def _split_pipelines(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip().lower() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _pipelines_are_known(self) -> Settings:
        enabled = {p.value for p in self.platforms.enabled()}
        for name in self.pipelines:
            if name == INTAKE_PIPELINE:
                continue
            if name not in {p.value for p in Platform}:
                raise ValueError(f"pipelines: unknown pipeline {name!r} (intake or a platform name)")
            if name not in enabled:
                raise ValueError(f"pipelines: {name} is not enabled")
        return self

    def runs_intake(self) -> bool:
        return not self.pipelines or INTAKE_PIPELINE in self.pipelines

    def delivery_pipelines(self) -> list[Platform]:
        """The enabled platforms whose pipelines this process runs."""
        enabled = self.platforms.enabled()
        if not self.pipelines:
            return enabled
        return [p for p in enabled if p.value in self.pipelines]

    @model_validator(mode="after")
    def _enabled_platforms_are_complete(self) -> Settings:
        for platform in self.platforms.enabled():
            settings = self.platforms.get(platform)
            if not default_connection_configured(settings, self.connections_dir is not None):
                continue  # its accounts are all connections: its own keys make no `default` one
            try:
                settings.resolved_base_url()
            except ConfigError:
                raise ValueError(
                    f"platforms.{platform.value}.base_url is required when {platform.value} is enabled"
                ) from None
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the YAML file, which arrives as init arguments.
        environ = _ENVIRON.get()
        if environ is not None:
            env_settings = _MappingEnvSource(settings_cls, environ)
        return env_settings, init_settings


#: The environment `load_settings` was given, when not the process's own.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("order_sync_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """The environment source over a given mapping: another environment is read, `os.environ` untouched."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # As EnvSettingsSource reads os.environ (Settings sets no env_ignore_empty, env_parse_none_str).
        if self.case_sensitive:
            return dict(self._environ)
        return {name.lower(): value for name, value in self._environ.items()}


def _unknown_env_keys(environ: Mapping[str, str]) -> list[str]:
    fields = set(Settings.model_fields)
    unknown = []
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        head = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if head not in fields:
            unknown.append(name)
    return sorted(unknown)


def _describe(error: ValidationError, from_env: bool) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return f"invalid configuration: {message}"
    key = ".".join(str(part) for part in first["loc"])
    if from_env and first["loc"]:
        hint = ENV_PREFIX + "__".join(str(part).upper() for part in first["loc"])
        key = f"{key} ({hint})"
    more = f" (+{len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"invalid configuration: {key}: {message}{more}"


def load_settings(config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (if any) and the environment; raise `ConfigError` with one line naming the key."""
    env = dict(os.environ if environ is None else environ)
    unknown = _unknown_env_keys(env)
    if unknown:
        raise ConfigError(f"invalid configuration: unknown setting {unknown[0]}")
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"invalid configuration: cannot read {config_file}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"invalid configuration: {config_file} must hold a mapping")
        file_values = loaded or {}
    try:
        token = _ENVIRON.set(env)
        try:
            return Settings(**file_values)
        finally:
            _ENVIRON.reset(token)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, from_env=not file_values)) from exc
