"""The exchange's own database: requests and everything in them, the audit trail of every
transition, the log of personal-data reads, and its read model of the registry.

Personal data (rules P2–P4) live only in ``subject_values``, in ``answers`` to personal-data
questions, in free text (``messages``, free-text answers) and in ``attachments``; a purge deletes
exactly those and leaves the non-personal skeleton for statistics.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.database import UtcDateTime
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


class State(StrEnum):
    """The life of a request (rules E1–E4)."""

    draft = "draft"
    awaiting_request_approval = "awaiting_request_approval"  # E3
    awaiting_acceptance = "awaiting_acceptance"
    in_progress = "in_progress"  # accepted; being answered (allocated when allocation is on, E2)
    awaiting_reply_approval = "awaiting_reply_approval"  # E3
    answered = "answered"
    additional_information_requested = "additional_information_requested"  # E4
    additional_information_refused = "additional_information_refused"  # E4
    referred = "referred"  # E4
    closed = "closed"
    withdrawn = "withdrawn"

    @property
    def is_open(self) -> bool:
        return self not in (State.draft, State.closed, State.withdrawn)


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_requesting", "requesting_authority_id", "state"),
        Index("ix_requests_responding", "responding_authority_id", "state"),
        # The sent and received overviews, newest first (read backwards), stop after one page.
        Index("ix_requests_requesting_created", "requesting_authority_id", "created_at", "id"),
        Index("ix_requests_responding_created", "responding_authority_id", "created_at", "id"),
        # A retried POST /requests with the same Idempotency-Key finds the draft it wrote.
        Index("uq_requests_idempotency", "requester_user_id", "idempotency_key", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    area: Mapped[str] = mapped_column(String(100), index=True)
    question_set_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[State] = mapped_column(String(40), index=True)
    requesting_authority_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    requester_user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    responding_authority_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    allocated_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    requester_language: Mapped[str] = mapped_column(String(2))
    reply_date: Mapped[date | None] = mapped_column(Date)
    proposed_reply_date: Mapped[date | None] = mapped_column(Date)
    parent_request_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("requests.id"))
    approving_coordinator_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    referral_coordinator_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    overdue_notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    idempotency_key: Mapped[str | None] = mapped_column(String(100))

    questions: Mapped[list[RequestQuestion]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="RequestQuestion.position"
    )


class RequestQuestion(Base):
    """A question chosen from the area's question set; it may have been forwarded elsewhere."""

    __tablename__ = "request_questions"

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    question_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    forwarded_to_request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class SubjectValue(Base):
    """A field identifying the professional or provider (personal data unless flagged otherwise)."""

    __tablename__ = "subject_values"

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    field_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    personal_data: Mapped[bool] = mapped_column(Boolean)


class Answer(Base):
    __tablename__ = "answers"

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    question_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    language: Mapped[str] = mapped_column(String(2))
    personal_data: Mapped[bool] = mapped_column(Boolean)  # the question's flag, or free text
    answered_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    answered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Message(Base):
    """Free text written on a request: comments, reasons, opinions. Always treated as personal data."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(2))
    author_user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    author_authority_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("requests.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigId)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    uploaded_by_authority_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AttachmentContent(Base):
    """The bytes of an attachment, kept in the exchange's own database so a purge is one transaction."""

    __tablename__ = "attachment_contents"

    attachment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("attachments.id"), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Transition(Base):
    """Invariant 5: every change of a request's state, with who, when, from and to."""

    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("requests.id"), index=True)
    action: Mapped[str] = mapped_column(String(60))
    from_state: Mapped[str | None] = mapped_column(String(40))
    to_state: Mapped[str] = mapped_column(String(40))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    actor_authority_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    message_id: Mapped[int | None] = mapped_column(BigId)  # the comment given with it, while it exists


class PersonalDataRead(Base):
    """Rule P3: every read of a request's personal data (who, which request, when)."""

    __tablename__ = "personal_data_reads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    authority_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReferralOpinion(Base):
    """Rule E4: a referred coordinator's opinion; the text is free text (purged)."""

    __tablename__ = "referral_opinions"

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    coordinator_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    message_id: Mapped[int | None] = mapped_column(BigId)
    given_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class Purge(Base):
    """A purge carried out, so that a re-sent order is confirmed again without deleting anything."""

    __tablename__ = "purges"

    request_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    deleted: Mapped[dict[str, int]] = mapped_column(JSON)
    purged_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReferenceCounter(Base):
    __tablename__ = "reference_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class KnownAuthority(Base):
    """Read model of a registry authority (event-carried state; the highest version wins)."""

    __tablename__ = "known_authorities"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(40))
    country: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(30))
    language: Mapped[str] = mapped_column(String(2))
    official_name: Mapped[str] = mapped_column(String(500))
    informal_name: Mapped[str] = mapped_column(String(500))
    areas: Mapped[list[str]] = mapped_column(JSON)
    allocation_enabled: Mapped[bool] = mapped_column(Boolean)
    links: Mapped[list[str]] = mapped_column(JSON)  # authorities allowed an overview (S4)
    request_coordinators: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # S5
    coordinator_settings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # S14, S15


class KnownUser(Base):
    """Read model of a registry user: authority, language and roles, nothing else."""

    __tablename__ = "known_users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    authority_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    status: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(2))
    roles: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
