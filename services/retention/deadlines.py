"""Per-request deadlines for personal data, from the exchange's events (rule P2).

A closed or withdrawn request is purged ``retention_period`` (P6M: calendar months) after it closed;
a draft never sent is purged ``retention_draft_period`` after it was started (or rejected back into
a draft, rule E3). Reopening suspends the deadline until the next close. Events may arrive twice or
out of order: the request's ``version`` decides, and an event no newer than the one held changes
nothing.

Handlers record what a deadline counts from (``basis_at``); :func:`settle_deadlines` applies the
configured period, because the period is a setting and handlers run without settings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import isodate
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.retention.models import Basis, Phase, RequestDeadline
from shared.contracts.exchange import RequestChange
from shared.database import as_utc
from shared.settings import Settings, UnsafeConfiguration

DRAFTING = frozenset({"drafted", "rejected"})  # a draft (again): the draft period runs
CLOSING = frozenset({"closed", "withdrawn"})  # the retention period runs (rule P2)
REOPENING = "reopened"
DRAFT_DELETED = "draft_deleted"
SETTLE_CHUNK = 1000

PERIOD_SETTING = {Basis.closure: "retention_period", Basis.draft: "retention_draft_period"}

# Rule P2: "at the latest six months" after closure. A period mixing months and days (P5M31D) may
# exceed six months from some dates only, so it is checked from every day of a four-year cycle.
LONGEST_RETENTION = "P6M"
_CYCLE_START = datetime(2024, 1, 1, tzinfo=UTC)
_CYCLE = [_CYCLE_START + timedelta(days=n) for n in range(4 * 365 + 1)]


def _setting(name: str) -> str:
    return f"IMI_{name.upper()}"


def _ends(settings: Settings, name: str) -> list[tuple[datetime, datetime]]:
    """(start, start + the setting) from every day of the cycle; out of range is refused."""
    duration = settings.duration(name)
    try:
        return [(start, start + duration) for start in _CYCLE]
    except (OverflowError, ValueError) as exc:
        raise UnsafeConfiguration(f"{_setting(name)}={getattr(settings, name)} is out of range") from exc


def check_periods(settings: Settings) -> None:
    """Refuse at start a retention period longer than six months (rule P2) or not positive, a draft
    period or re-send wait not positive, and a negative overdue grace."""
    cap = isodate.parse_duration(LONGEST_RETENTION)
    if any(end > start + cap for start, end in _ends(settings, "retention_period")):
        raise UnsafeConfiguration(
            f"{_setting('retention_period')}={settings.retention_period} is longer than six months: "
            "personal data are deleted at the latest six months after closure (rule P2)"
        )
    for name in ("retention_period", "retention_draft_period", "retention_resend_after"):
        if any(end <= start for start, end in _ends(settings, name)):
            raise UnsafeConfiguration(f"{_setting(name)}={getattr(settings, name)} must be a positive duration")
    if any(end < start for start, end in _ends(settings, "retention_overdue_after")):
        raise UnsafeConfiguration(
            f"{_setting('retention_overdue_after')}={settings.retention_overdue_after} must not be negative"
        )


def verb_of(event_type: str) -> str:
    """``exchange.request.closed.v1`` -> ``closed``."""
    return event_type.split(".")[2]


@dataclass(frozen=True)
class Deadline:
    period: str
    due_at: datetime


def deadline_for(settings: Settings, basis: Basis, basis_at: datetime) -> Deadline:
    """``basis_at`` plus the period the settings give for ``basis`` (months are calendar months)."""
    name = PERIOD_SETTING[basis]
    due_at: datetime = as_utc(basis_at) + settings.duration(name)
    return Deadline(period=getattr(settings, name), due_at=due_at)


def _start(row: RequestDeadline, phase: Phase, basis: Basis | None, basis_at: datetime | None) -> None:
    """A new deadline (or none): the period is applied later, and it needs an order of its own."""
    row.phase = phase
    row.basis, row.basis_at = basis, basis_at
    row.period, row.due_at = None, None
    row.order_id = None


def _apply(row: RequestDeadline, verb: str, change: RequestChange, is_new: bool) -> None:
    if verb in DRAFTING:
        _start(row, Phase.draft, Basis.draft, as_utc(change.occurred_at))
    elif verb in CLOSING:
        closed_at = as_utc(change.closed_at or change.occurred_at)
        if is_new or row.phase != Phase.closed or row.basis_at != closed_at:
            _start(row, Phase.closed, Basis.closure, closed_at)
    elif verb == REOPENING:
        _start(row, Phase.reopened, None, None)
    elif verb == DRAFT_DELETED:
        # The exchange deleted the draft with its data: nothing left to purge. An order already
        # issued stays open until the exchange confirms it.
        row.phase = Phase.discarded
        row.basis = row.basis_at = row.period = row.due_at = None
    elif is_new or row.phase == Phase.draft:
        # Any other event shows the request was sent: the draft deadline no longer applies. On a
        # closed request such an event never lifts the deadline: only reopening does (rule P2).
        _start(row, Phase.open, None, None)


async def _locked_row(session: AsyncSession, request_id: uuid.UUID, now: datetime) -> tuple[RequestDeadline, bool]:
    """The request's row, locked for this transaction, and whether this transaction created it.

    Two first events about one request may be handled at once by competing consumers: the insert
    ignores a conflict, so the second waits for the first's row instead of failing on its key.
    """
    row = await session.get(RequestDeadline, request_id, with_for_update=True)
    if row is not None:
        return row, False
    connection = await session.connection()
    insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    created = await session.execute(
        insert(RequestDeadline)
        .values(request_id=request_id, version=0, phase=Phase.open, last_event="", updated_at=now)
        .on_conflict_do_nothing(index_elements=["request_id"])
    )
    row = await session.get(RequestDeadline, request_id, with_for_update=True, populate_existing=True)
    assert row is not None
    return row, bool(created.rowcount)  # type: ignore[attr-defined]


async def record_request_change(session: AsyncSession, verb: str, change: RequestChange, now: datetime) -> bool:
    """Apply one request event; False when it is no newer than what is held (it changes nothing)."""
    row, is_new = await _locked_row(session, change.request_id, now)
    if not is_new and change.version <= row.version:
        return False
    _apply(row, verb, change, is_new)
    row.version = change.version
    row.last_event = verb
    row.updated_at = now
    return True


async def settle_deadlines(session: AsyncSession, settings: Settings) -> int:
    """Give every fresh deadline its due date from the configured period; returns how many."""
    settled = 0
    while True:
        rows = (
            await session.scalars(
                select(RequestDeadline)
                .where(RequestDeadline.basis_at.is_not(None), RequestDeadline.due_at.is_(None))
                .order_by(RequestDeadline.request_id)
                .limit(SETTLE_CHUNK)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            assert row.basis is not None and row.basis_at is not None
            deadline = deadline_for(settings, row.basis, row.basis_at)
            row.period, row.due_at = deadline.period, deadline.due_at
        settled += len(rows)
        await session.flush()
        if len(rows) < SETTLE_CHUNK:
            return settled


def current_deadline(row: RequestDeadline, settings: Settings) -> Deadline | None:
    """The request's deadline, settled or not yet (computed from the settings then)."""
    if row.due_at is not None and row.period is not None:
        return Deadline(period=row.period, due_at=row.due_at)
    if row.basis is None or row.basis_at is None:
        return None
    return deadline_for(settings, row.basis, row.basis_at)


async def unsettled_deadlines(session: AsyncSession, settings: Settings) -> list[tuple[RequestDeadline, Deadline]]:
    """Deadlines the scheduler has not settled yet, with the due date it will give them."""
    rows = await session.scalars(
        select(RequestDeadline).where(RequestDeadline.basis_at.is_not(None), RequestDeadline.due_at.is_(None))
    )
    found = []
    for row in rows:
        deadline = current_deadline(row, settings)
        if deadline is not None:
            found.append((row, deadline))
    return found
