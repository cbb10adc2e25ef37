"""The notifier service's own database: its read model of the recipients, the deliveries it owes,
and its outbox and inbox.

The read model keeps what addressing an alert needs (e-mail addresses, working languages, roles,
allocation and coordinator settings) and nothing else: no user name ever (rule S11). A delivery
keeps the alert's variables, never a rendered body; a temporary password is kept only as the
registry sealed it, and wiped once its e-mail is sent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, MetaData, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.outbox import messaging_tables

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
messaging = messaging_tables(metadata)

BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


class KnownAuthority(Base):
    """A registry authority as far as alerts need it (event-carried state; the highest version wins)."""

    __tablename__ = "known_authorities"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(40))
    country: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(30))
    language: Mapped[str] = mapped_column(String(5))
    informal_name: Mapped[str] = mapped_column(String(500))
    # Rule S1: the informal name in other languages, language -> name (current or machine ones).
    names: Mapped[dict[str, str]] = mapped_column(JSON)
    emails: Mapped[list[str]] = mapped_column(JSON)  # the authority's addresses (rule S1)
    areas: Mapped[list[str]] = mapped_column(JSON)
    allocation_enabled: Mapped[bool] = mapped_column(Boolean)  # rule S8
    request_coordinators: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # rule S5
    coordinator_settings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # rules S14, S15
    registered_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class KnownUser(Base):
    """A registry user as far as alerts need it: address, language, status, digest choice, roles."""

    __tablename__ = "known_users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    authority_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    email: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(5))
    status: Mapped[str] = mapped_column(String(20))
    digest: Mapped[bool] = mapped_column(Boolean)
    roles: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{"role": ..., "area": ... | None}]


class DeliveryStatus(StrEnum):
    """Where one alert to one recipient stands."""

    queued = "queued"  # waits for the sender (again after a temporary failure, at next_attempt_at)
    sending = "sending"  # claimed by a sender until claimed_until; sent at most once more after a crash
    sent = "sent"
    failed = "failed"  # refused for good (5xx); visible to ops, who may send it again
    skipped = "skipped"  # the recipient is unknown or inactive: nothing is sent (reason says which)
    awaiting_digest = "awaiting_digest"  # a digest user's alert, kept for their daily summary
    digested = "digested"  # listed in the daily summary delivery digest_id


class Delivery(Base):
    """One alert to one recipient: one row per event and recipient, whatever the redeliveries."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_user_status", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    event_type: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(60))
    # Derived from the event and the recipient, so a retry of the same alert is recognisable.
    message_id: Mapped[str] = mapped_column(String(100), unique=True)
    recipient: Mapped[str | None] = mapped_column(String(320))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    authority_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    language: Mapped[str] = mapped_column(String(5))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(60))
    # The alert's variables (rendering.CONTEXT_KEYS without the link and the password): the e-mail
    # is rendered from them when sent, so no body is ever stored.
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Rule S11: a temporary password as the registry sealed it, only until the e-mail is sent.
    sealed_secret: Mapped[str | None] = mapped_column(Text)
    # The front-end path the alert links to (``/requests/<id>``), behind IMI_PUBLIC_URL.
    link: Mapped[str | None] = mapped_column(String(1000))
    # What a daily summary lists about a request alert.
    request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    request_reference: Mapped[str | None] = mapped_column(String(40))
    digest_id: Mapped[int | None] = mapped_column(BigId)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claim: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
