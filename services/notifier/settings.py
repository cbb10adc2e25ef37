"""The notifier's own settings (prefix ``IMI_NOTIFIER_``): when digests go out, how fast mail is
sent, how long a server outage is waited out between attempts, and how long delivery records are
kept. SMTP itself (host, port, TLS, credentials, sender) is in the shared settings (``IMI_SMTP_…``)."""

from __future__ import annotations

from datetime import timedelta

import isodate
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMI_NOTIFIER_", extra="ignore", frozen=True)

    # Hour (UTC, on the service's clock) of the daily summary for users who chose a digest.
    digest_hour: int = Field(default=17, ge=0, le=23)
    # At most this many messages per second reach the SMTP server, on average (a burst of a tenth of
    # a second's worth may go at once after a quiet spell). 200: twice the 100 e-mails/s that 50 new
    # requests a second raise (far above IMI's real load), well within what a mail relay accepts.
    send_rate: float = Field(default=200.0, gt=0, le=10_000)
    # A temporary failure (server down, 4xx) is retried after this many seconds, doubling each
    # attempt up to retry_max; mail is never dropped for being temporarily undeliverable.
    retry_initial: float = Field(default=30.0, gt=0)
    retry_max: float = Field(default=3600.0, gt=0)
    # Delivery records (sent, failed, skipped, listed in a digest) are deleted this long after they
    # were written (ISO 8601 duration); mail still waiting to go out is never deleted.
    delivery_retention: str = "P30D"

    @field_validator("delivery_retention")
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        try:
            isodate.parse_duration(value)
        except (isodate.ISO8601Error, ValueError) as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 duration such as P30D") from exc
        return value

    @model_validator(mode="after")
    def _backoff_grows(self) -> NotifierSettings:
        if self.retry_max < self.retry_initial:
            raise ValueError("IMI_NOTIFIER_RETRY_MAX must not be shorter than IMI_NOTIFIER_RETRY_INITIAL")
        return self

    @property
    def retention(self) -> timedelta | isodate.Duration:
        parsed: timedelta | isodate.Duration = isodate.parse_duration(self.delivery_retention)
        return parsed

    def backoff(self, attempts: int) -> timedelta:
        """The wait before the next try after ``attempts`` failed ones (1, 2, 4, … times the first)."""
        exponent = min(max(attempts, 1) - 1, 30)
        return timedelta(seconds=min(self.retry_max, self.retry_initial * 2**exponent))
