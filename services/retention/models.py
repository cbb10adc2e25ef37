"""The retention service's own database: deadlines, purge orders and the purge log (rule P2).

It never holds personal data (ARCHITECTURE.md, Personal data): only request and order ids, instants,
counts, short codes and hashes. ``tests/retention/test_schema.py`` pins every column.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, MetaData, String, Uuid, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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

GENESIS_HASH = "0" * 64


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime}


class Phase(StrEnum):
    """Where a request stands for retention, from the exchange's events."""

    draft = "draft"  # never sent: purged after the draft period
    open = "open"  # sent and not closed: no deadline
    closed = "closed"  # closed or withdrawn: purged after the retention period (rule P2)
    reopened = "reopened"  # the deadline is suspended until the next close
    discarded = "discarded"  # the draft was deleted with its data: nothing left to purge


class Basis(StrEnum):
    """What a deadline counts from."""

    closure = "closure"  # closed_at (or withdrawal) + retention_period
    draft = "draft"  # the draft's start + retention_draft_period


class LogKind(StrEnum):
    ordered = "ordered"
    reordered = "reordered"
    confirmed = "confirmed"
    overdue = "overdue"
    unmatched_confirmation = "unmatched_confirmation"
    not_purged = "not_purged"  # the exchange kept the data: reopened after the order (rule P2)


class RequestDeadline(Base):
    """One request's retention state, from the newest exchange event seen for it (``version``).

    The handler records when the deadline counts from (``basis_at``); the scheduler applies the
    configured period and fills ``due_at`` (handlers have no settings; the period lives there).
    """

    __tablename__ = "request_deadlines"
    __table_args__ = (
        Index(
            "ix_request_deadlines_unsettled",
            "request_id",
            postgresql_where=text("basis_at IS NOT NULL AND due_at IS NULL"),
            sqlite_where=text("basis_at IS NOT NULL AND due_at IS NULL"),
        ),
    )

    request_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    phase: Mapped[Phase] = mapped_column(String(20))
    last_event: Mapped[str] = mapped_column(String(40))  # the exchange's verb, e.g. "closed"
    basis: Mapped[Basis | None] = mapped_column(String(20))
    basis_at: Mapped[datetime | None]
    period: Mapped[str | None] = mapped_column(String(20))  # the ISO 8601 duration applied, e.g. P6M
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    # The order issued for the current deadline; a new deadline (re-closing) starts without one.
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    updated_at: Mapped[datetime]


class PurgeOrder(Base):
    """One purge order of up to ``retention_batch_size`` requests, sent again until all are confirmed."""

    __tablename__ = "purge_orders"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    due_at: Mapped[datetime]  # the earliest deadline among its requests
    issued_at: Mapped[datetime]
    attempt: Mapped[int] = mapped_column(Integer)
    last_sent_at: Mapped[datetime]
    next_send_at: Mapped[datetime | None] = mapped_column(index=True)  # None once complete
    request_count: Mapped[int] = mapped_column(Integer)
    confirmed_count: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[datetime | None]


class PurgeItem(Base):
    """One request of an order, and the exchange's confirmation that its personal data are gone (or
    that it kept them because the request is in use again)."""

    __tablename__ = "purge_items"
    __table_args__ = (
        Index(
            "ix_purge_items_pending",
            "due_at",
            postgresql_where=text("confirmed_at IS NULL"),
            sqlite_where=text("confirmed_at IS NULL"),
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("purge_orders.id"), primary_key=True)
    request_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, index=True)
    due_at: Mapped[datetime]
    purged_at: Mapped[datetime | None]  # as the exchange reports it
    confirmed_at: Mapped[datetime | None]  # when the confirmation reached this service
    deleted_count: Mapped[int | None] = mapped_column(Integer)
    overdue_reported_at: Mapped[datetime | None]
    # Confirmed without deleting anything, and why (request_open, not_due): the request was reopened
    # after the order was issued; a new deadline comes when it closes again (rule P2).
    not_purged: Mapped[str | None] = mapped_column(String(30))


class PurgeLogEntry(Base):
    """The append-only, hash-chained log of every order and confirmation (see ``purge_log.py``)."""

    __tablename__ = "purge_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[LogKind] = mapped_column(String(30))
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    due_at: Mapped[datetime | None]
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    attempt: Mapped[int | None] = mapped_column(Integer)
    deleted_count: Mapped[int | None] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class PurgeLogHead(Base):
    """The last entry of the log (a single row, ``id`` 1): appenders lock it, so sequence numbers
    never collide, and verification compares it with the last entry, so a deleted tail shows."""

    __tablename__ = "purge_log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
