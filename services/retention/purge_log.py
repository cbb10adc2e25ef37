"""The purge log: tamper-evident proof of every purge order and confirmation (rule P2).

Append-only and hash-chained. Entry ``n`` stores ``prev_hash`` (the ``hash`` of entry ``n - 1``, or
64 zeros for the first) and ``hash = SHA-256(canonical content)``, where the canonical content is the
JSON object of ``seq, kind, order_id, request_id, due_at, occurred_at, recorded_at, attempt,
deleted_count, prev_hash`` with sorted keys, no spaces, UUIDs in lower-case hex with hyphens and
instants in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (absent values are ``null``). Anyone holding an
export of the log can recompute the chain without this code.

Changing an entry changes its hash; recomputing that hash breaks the next entry's ``prev_hash``;
deleting an entry leaves a gap in the sequence numbers; deleting the tail leaves the head row
(``purge_log_head``) pointing past the last entry. Rewriting the whole log and the head together is
not detectable from inside the database: the report gives the head hash for data-protection
officers to keep outside it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.retention.models import GENESIS_HASH, LogKind, PurgeLogEntry, PurgeLogHead
from shared.database import as_utc

HEAD_ID = 1
BreakReason = Literal["missing", "content_altered", "chain_broken", "head_mismatch"]
VERIFY_CHUNK = 1000


@dataclass(frozen=True)
class LogRecord:
    """What one entry says, before it is numbered and chained."""

    kind: LogKind
    order_id: uuid.UUID | None
    request_id: uuid.UUID | None
    occurred_at: datetime
    due_at: datetime | None = None
    attempt: int | None = None
    deleted_count: int | None = None


def _instant(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def canonical_content(
    *,
    seq: int,
    kind: str,
    order_id: uuid.UUID | None,
    request_id: uuid.UUID | None,
    due_at: datetime | None,
    occurred_at: datetime,
    recorded_at: datetime,
    attempt: int | None,
    deleted_count: int | None,
    prev_hash: str,
) -> bytes:
    content: dict[str, Any] = {
        "seq": seq,
        "kind": str(kind),
        "order_id": _uuid(order_id),
        "request_id": _uuid(request_id),
        "due_at": _instant(due_at),
        "occurred_at": _instant(occurred_at),
        "recorded_at": _instant(recorded_at),
        "attempt": attempt,
        "deleted_count": deleted_count,
        "prev_hash": prev_hash,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: PurgeLogEntry) -> str:
    """The hash an entry must carry, recomputed from its stored content."""
    return hashlib.sha256(
        canonical_content(
            seq=entry.seq,
            kind=entry.kind,
            order_id=entry.order_id,
            request_id=entry.request_id,
            due_at=entry.due_at,
            occurred_at=entry.occurred_at,
            recorded_at=entry.recorded_at,
            attempt=entry.attempt,
            deleted_count=entry.deleted_count,
            prev_hash=entry.prev_hash,
        )
    ).hexdigest()


async def _locked_head(session: AsyncSession) -> PurgeLogHead:
    head = await session.scalar(select(PurgeLogHead).where(PurgeLogHead.id == HEAD_ID).with_for_update())
    if head is None:
        # The migration creates it; a database built otherwise starts its log here.
        head = PurgeLogHead(id=HEAD_ID, seq=0, hash=GENESIS_HASH)
        session.add(head)
        await session.flush()
    return head


async def append(session: AsyncSession, records: Sequence[LogRecord], recorded_at: datetime) -> None:
    """Add ``records`` to the log, in order, inside the caller's transaction.

    Call it last in a transaction: it locks the head row until the commit, which serialises
    appenders (and taking it last keeps that lock short and free of lock-order cycles).
    """
    if not records:
        return
    head = await _locked_head(session)
    seq, previous = head.seq, head.hash
    rows = []
    for record in records:
        seq += 1
        entry = PurgeLogEntry(
            seq=seq,
            kind=record.kind,
            order_id=record.order_id,
            request_id=record.request_id,
            due_at=record.due_at,
            occurred_at=as_utc(record.occurred_at),
            recorded_at=as_utc(recorded_at),
            attempt=record.attempt,
            deleted_count=record.deleted_count,
            prev_hash=previous,
        )
        entry.hash = entry_hash(entry)
        previous = entry.hash
        rows.append(
            {
                "seq": entry.seq,
                "kind": entry.kind,
                "order_id": entry.order_id,
                "request_id": entry.request_id,
                "due_at": entry.due_at,
                "occurred_at": entry.occurred_at,
                "recorded_at": entry.recorded_at,
                "attempt": entry.attempt,
                "deleted_count": entry.deleted_count,
                "prev_hash": entry.prev_hash,
                "hash": entry.hash,
            }
        )
    await session.execute(insert(PurgeLogEntry), rows)
    head.seq, head.hash = seq, previous
    await session.flush()


@dataclass(frozen=True)
class Break:
    """The first entry that does not hold: its sequence number and why."""

    seq: int
    reason: BreakReason


@dataclass(frozen=True)
class Verification:
    entries: int
    head_seq: int
    head_hash: str
    first_broken: Break | None

    @property
    def intact(self) -> bool:
        return self.first_broken is None


async def _entries(session: AsyncSession) -> AsyncIterator[PurgeLogEntry]:
    after = 0
    while True:
        chunk = (
            await session.scalars(
                select(PurgeLogEntry).where(PurgeLogEntry.seq > after).order_by(PurgeLogEntry.seq).limit(VERIFY_CHUNK)
            )
        ).all()
        for entry in chunk:
            yield entry
        if len(chunk) < VERIFY_CHUNK:
            return
        after = chunk[-1].seq
        session.expunge_all()


async def verify(session: AsyncSession) -> Verification:
    """Walk the whole chain; name the first entry that is missing, altered or out of chain."""
    head = await session.scalar(select(PurgeLogHead).where(PurgeLogHead.id == HEAD_ID))
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)
    expected_seq, previous, count = 1, GENESIS_HASH, 0
    first_broken: Break | None = None
    async for entry in _entries(session):
        count += 1
        if first_broken is not None:
            continue
        if entry.seq != expected_seq:
            first_broken = Break(expected_seq, "missing")
        elif entry.hash != entry_hash(entry):
            first_broken = Break(entry.seq, "content_altered")
        elif entry.prev_hash != previous:
            first_broken = Break(entry.seq, "chain_broken")
        expected_seq, previous = entry.seq + 1, entry.hash
    if first_broken is None:
        last_seq = expected_seq - 1
        if head_seq > last_seq:  # the tail was deleted
            first_broken = Break(last_seq + 1, "missing")
        elif head_seq < last_seq:  # entries written past the head, or the head rolled back
            first_broken = Break(head_seq + 1, "head_mismatch")
        elif head_hash != previous:
            first_broken = Break(last_seq, "head_mismatch")
    return Verification(entries=count, head_seq=head_seq, head_hash=head_hash, first_broken=first_broken)


async def entries_page(session: AsyncSession, after: int, limit: int) -> list[PurgeLogEntry]:
    """Entries after sequence number ``after``, for export."""
    found = await session.scalars(
        select(PurgeLogEntry).where(PurgeLogEntry.seq > after).order_by(PurgeLogEntry.seq).limit(limit)
    )
    return list(found)
