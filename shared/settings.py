"""Configuration, read only from the environment (prefix ``IMI_``) and checked at start-up.

Every service reads :class:`Settings` for itself; each variable is documented once, in the
README's configuration table. Unsafe defaults (generated development keys, a memory broker, SQLite)
are accepted only when ``IMI_ENVIRONMENT=development``; anywhere else start-up fails with a message
naming the variable to set.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

import isodate
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES: Final = ("registry", "exchange", "notifier", "retention")
ServiceName = Literal["registry", "exchange", "notifier", "retention"]

DEFAULT_PORTS: Final[dict[str, int]] = {"registry": 8001, "exchange": 8002, "notifier": 8003, "retention": 8004}


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class SmtpSecurity(StrEnum):
    none = "none"
    starttls = "starttls"
    tls = "tls"


class UnsafeConfiguration(Exception):
    """Raised when a setting is unsafe for the environment the service runs in."""


class Settings(BaseSettings):
    """Everything any service may read. One instance per process; services share the values."""

    model_config = SettingsConfigDict(env_prefix="IMI_", extra="ignore", frozen=True)

    environment: Environment = Environment.development
    data_dir: Path = Path("var")

    http_host: str = "127.0.0.1"
    http_port: int | None = None
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: the client address behind
    # them is what the login's per-address rate limit counts (services/registry/rate_limits.py).
    forwarded_allow_ips: str = "127.0.0.1"

    broker_url: str = "memory://"
    bus_namespace: str = Field(default="imi", pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    bus_retry_delays: list[float] = Field(default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0])
    bus_prefetch: int = Field(default=16, ge=1, le=1000)
    bus_publish_timeout: float = Field(default=10.0, gt=0)

    registry_database_url: str | None = None
    exchange_database_url: str | None = None
    notifier_database_url: str | None = None
    retention_database_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1)

    outbox_poll_interval: float = Field(default=2.0, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1, le=10_000)
    outbox_retention: timedelta = timedelta(days=7)
    inbox_retention: timedelta = timedelta(days=30)
    prune_interval: float = Field(default=3600.0, gt=0)

    registry_url: str = "http://127.0.0.1:8001"
    jwks_url: str | None = None
    token_issuer: str = "imi-registry"
    token_audience: str = "imi"
    public_url: str = "http://127.0.0.1:8001"

    signing_key: str | None = None
    additional_signing_public_keys: str | None = None
    sealing_public_key: str | None = None
    sealing_private_key: str | None = None
    security_code_key: str | None = None

    machine_translation_url: str | None = None
    machine_translation_api_key: str | None = None
    machine_translation_interval: float = Field(default=60.0, gt=0)

    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    attachment_types: list[str] = Field(
        default_factory=lambda: [
            "application/pdf",
            "image/png",
            "image/jpeg",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.oasis.opendocument.text",
        ]
    )

    # Rule P2: personal data of an exchange are deleted at the latest this long after it closes.
    retention_period: str = "P6M"
    retention_draft_period: str = "P30D"
    retention_scan_interval: float = Field(default=60.0, gt=0)
    retention_batch_size: int = Field(default=500, ge=1, le=10_000)
    retention_resend_after: str = "PT1H"
    retention_overdue_after: str = "P1D"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_security: SmtpSecurity = SmtpSecurity.none
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "IMI <no-reply@imi.localhost>"
    # Certificate authorities (PEM) trusted for the SMTP server's certificate instead of the system's:
    # a relay with a certificate of an internal authority.
    smtp_ca_file: Path | None = None

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment == Environment.development:
            return self
        problems = []
        if self.environment == Environment.production:
            if self.broker_url.startswith("memory://"):
                problems.append("IMI_BROKER_URL must name a RabbitMQ broker (amqp://…), not memory://")
            if self.smtp_security == SmtpSecurity.none and self.smtp_username:
                problems.append("IMI_SMTP_SECURITY must be starttls or tls when SMTP credentials are set")
        if problems:
            raise UnsafeConfiguration(
                f"unsafe configuration for IMI_ENVIRONMENT={self.environment.value}: " + "; ".join(problems)
            )
        return self

    @property
    def is_development(self) -> bool:
        return self.environment == Environment.development

    @field_validator(
        "retention_period",
        "retention_draft_period",
        "retention_resend_after",
        "retention_overdue_after",
    )
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        try:
            isodate.parse_duration(value)
        except (isodate.ISO8601Error, ValueError) as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 duration such as P6M or PT1H") from exc
        return value

    def duration(self, name: str) -> timedelta | isodate.Duration:
        """An ISO 8601 duration setting, ready to add to a datetime (months count as calendar months)."""
        parsed: timedelta | isodate.Duration = isodate.parse_duration(getattr(self, name))
        return parsed

    @field_validator(
        "registry_database_url",
        "exchange_database_url",
        "notifier_database_url",
        "retention_database_url",
        "jwks_url",
        "machine_translation_url",
        "machine_translation_api_key",
        "signing_key",
        "additional_signing_public_keys",
        "sealing_public_key",
        "sealing_private_key",
        "security_code_key",
        "smtp_username",
        "smtp_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def database_url(self, service: str) -> str:
        """The database of one service; the embedded default is an SQLite file in the data directory.

        Each service checks only its own (a container is given no other service's database); in
        production it must be PostgreSQL.
        """
        url: str | None = getattr(self, f"{service}_database_url")
        if self.environment == Environment.production and (url is None or url.startswith("sqlite")):
            raise UnsafeConfiguration(
                f"IMI_{service.upper()}_DATABASE_URL must name a PostgreSQL database in production"
            )
        if url:
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def port(self, service: str) -> int:
        return self.http_port or DEFAULT_PORTS[service]

    @property
    def resolved_jwks_url(self) -> str:
        return self.jwks_url or f"{self.registry_url.rstrip('/')}/.well-known/jwks.json"


def require_secret(settings: Settings, name: str) -> str | None:
    """A secret's value; outside development a missing secret stops the service (never a default)."""
    value: str | None = getattr(settings, name)
    if value is None and not settings.is_development:
        raise UnsafeConfiguration(f"IMI_{name.upper()} must be set when IMI_ENVIRONMENT={settings.environment.value}")
    return value
