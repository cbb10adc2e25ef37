"""Purge orders: issued when deadlines fall due, sent again until the exchange confirms each request,
reported when overdue (rule P2). Every order, re-sending, confirmation and overdue report is written
to the purge log in the same transaction as the change and the event it publishes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import isodate
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.retention import purge_log
from services.retention.deadlines import unsettled_deadlines
from services.retention.models import LogKind, PurgeItem, PurgeLogEntry, PurgeOrder, RequestDeadline
from services.retention.purge_log import LogRecord
from shared.contracts import retention as contracts
from shared.contracts.exchange import PersonalDataPurged
from shared.database import as_utc
from shared.logging import get_logger
from shared.outbox import Messaging, UnitOfWork
from shared.settings import Settings

log = get_logger(__name__)

# The wait before re-sending doubles after each attempt, up to 2**6 times the first wait: by then
# the purge is long overdue and ops have been told (PURGE_OVERDUE).
MAX_DOUBLINGS = 6
CHUNK = 500


def resend_wait(settings: Settings, attempt: int) -> timedelta | isodate.Duration:
    """How long after sending attempt ``attempt`` the order goes out again if still unconfirmed."""
    wait: timedelta | isodate.Duration = settings.duration("retention_resend_after") * (
        2 ** min(attempt - 1, MAX_DOUBLINGS)
    )
    return wait


def overdue_threshold(settings: Settings, now: datetime) -> datetime:
    """A purge due at or before this instant and still unconfirmed is overdue."""
    threshold: datetime = now - settings.duration("retention_overdue_after")
    return threshold


async def issue_orders(messaging: Messaging, settings: Settings, now: datetime) -> list[uuid.UUID]:
    """Order the purge of every due deadline that has no order yet, ``retention_batch_size`` per order."""
    issued: list[uuid.UUID] = []
    batch_size = settings.retention_batch_size
    while True:
        async with messaging.transaction() as uow:
            session = uow.session
            due = (
                await session.scalars(
                    select(RequestDeadline)
                    .where(RequestDeadline.due_at <= now, RequestDeadline.order_id.is_(None))
                    .order_by(RequestDeadline.due_at, RequestDeadline.request_id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not due:
                return issued
            order = PurgeOrder(
                id=uuid.uuid4(),
                due_at=min(row.due_at for row in due if row.due_at is not None),
                issued_at=now,
                attempt=1,
                last_sent_at=now,
                next_send_at=now + resend_wait(settings, 1),
                request_count=len(due),
                confirmed_count=0,
            )
            session.add(order)
            await session.flush()
            records = []
            for row in due:
                assert row.due_at is not None
                row.order_id = order.id
                session.add(PurgeItem(order_id=order.id, request_id=row.request_id, due_at=row.due_at))
                records.append(LogRecord(LogKind.ordered, order.id, row.request_id, now, due_at=row.due_at, attempt=1))
            await uow.emit(
                contracts.PURGE_ORDERED,
                contracts.PurgeOrder(
                    order_id=order.id, request_ids=[row.request_id for row in due], due_at=order.due_at, attempt=1
                ),
            )
            await session.flush()
            await purge_log.append(session, records, now)
        issued.append(order.id)
        log.info("purge ordered", order_id=str(order.id), requests=len(due))
        if len(due) < batch_size:
            return issued


async def resend_orders(messaging: Messaging, settings: Settings, now: datetime) -> int:
    """Send again, same order id and attempt + 1, every order with requests still unconfirmed."""
    resent = 0
    while True:
        async with messaging.transaction() as uow:
            session = uow.session
            orders = (
                await session.scalars(
                    select(PurgeOrder)
                    .where(PurgeOrder.completed_at.is_(None), PurgeOrder.next_send_at <= now)
                    .order_by(PurgeOrder.next_send_at, PurgeOrder.id)
                    .limit(CHUNK)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            records = []
            for order in orders:
                unconfirmed = list(
                    await session.scalars(
                        select(PurgeItem.request_id)
                        .where(PurgeItem.order_id == order.id, PurgeItem.confirmed_at.is_(None))
                        .order_by(PurgeItem.request_id)
                    )
                )
                if not unconfirmed:
                    order.completed_at, order.next_send_at = now, None
                    continue
                order.attempt += 1
                order.last_sent_at = now
                order.next_send_at = now + resend_wait(settings, order.attempt)
                await uow.emit(
                    contracts.PURGE_ORDERED,
                    contracts.PurgeOrder(
                        order_id=order.id, request_ids=unconfirmed, due_at=order.due_at, attempt=order.attempt
                    ),
                )
                records += [
                    LogRecord(LogKind.reordered, order.id, request_id, now, due_at=order.due_at, attempt=order.attempt)
                    for request_id in unconfirmed
                ]
                resent += 1
                log.warning("purge order unconfirmed; sent again", order_id=str(order.id), attempt=order.attempt)
            await session.flush()
            await purge_log.append(session, records, now)
        if len(orders) < CHUNK:
            return resent


async def report_overdue(messaging: Messaging, settings: Settings, now: datetime) -> int:
    """Tell ops, once per request and order, about every purge unconfirmed past its grace period."""
    reported = 0
    threshold = overdue_threshold(settings, now)
    while True:
        async with messaging.transaction() as uow:
            session = uow.session
            rows = (
                await session.execute(
                    select(PurgeItem, PurgeOrder.attempt)
                    .join(PurgeOrder, PurgeOrder.id == PurgeItem.order_id)
                    .where(
                        PurgeItem.confirmed_at.is_(None),
                        PurgeItem.overdue_reported_at.is_(None),
                        PurgeItem.due_at <= threshold,
                    )
                    .order_by(PurgeItem.due_at, PurgeItem.request_id)
                    .limit(CHUNK)
                    .with_for_update(skip_locked=True, of=PurgeItem)
                )
            ).all()
            records = []
            for item, attempts in rows:
                item.overdue_reported_at = now
                await uow.emit(
                    contracts.PURGE_OVERDUE,
                    contracts.PurgeOverdue(
                        order_id=item.order_id, request_id=item.request_id, due_at=item.due_at, attempts=attempts
                    ),
                )
                record = LogRecord(
                    LogKind.overdue, item.order_id, item.request_id, now, due_at=item.due_at, attempt=attempts
                )
                records.append(record)
                log.error("purge overdue", order_id=str(item.order_id), request_id=str(item.request_id))
            reported += len(rows)
            await session.flush()
            await purge_log.append(session, records, now)
        if len(rows) < CHUNK:
            return reported


async def record_confirmation(uow: UnitOfWork, purged: PersonalDataPurged) -> None:
    """The exchange confirms one request of an order. A duplicate changes nothing; a confirmation of
    an order this service never gave is logged once (it proves a deletion) and otherwise ignored.

    The exchange may confirm without deleting anything (``not_purged``): the request was reopened
    after the order was issued (rule P2). The item is settled all the same, so the order is no longer
    sent again for it; the request is ordered again when it closes again and its new deadline comes."""
    session, now = uow.session, uow.clock.now()
    deleted = sum(purged.deleted.values())
    item = await session.get(PurgeItem, (purged.order_id, purged.request_id), with_for_update=True)
    if item is None:
        already = await session.scalar(
            select(PurgeLogEntry.seq)
            .where(
                PurgeLogEntry.kind == LogKind.unmatched_confirmation,
                PurgeLogEntry.order_id == purged.order_id,
                PurgeLogEntry.request_id == purged.request_id,
            )
            .limit(1)
        )
        if already is None:
            log.warning("confirmation of an unknown purge order", order_id=str(purged.order_id))
            record = LogRecord(
                LogKind.unmatched_confirmation,
                purged.order_id,
                purged.request_id,
                as_utc(purged.purged_at),
                deleted_count=deleted,
            )
            await purge_log.append(session, [record], now)
        return
    if item.confirmed_at is not None:
        return
    order = await session.get(PurgeOrder, purged.order_id, with_for_update=True)
    assert order is not None  # an item belongs to its order (foreign key)
    item.confirmed_at = now
    if purged.not_purged is None:
        item.purged_at, item.deleted_count = as_utc(purged.purged_at), deleted
        record = LogRecord(
            LogKind.confirmed,
            order.id,
            item.request_id,
            item.purged_at,
            due_at=item.due_at,
            attempt=order.attempt,
            deleted_count=deleted,
        )
    else:
        item.not_purged = purged.not_purged
        await _order_again_if_still_due(session, item)
        record = LogRecord(
            LogKind.not_purged,
            order.id,
            item.request_id,
            as_utc(purged.purged_at),
            due_at=item.due_at,
            attempt=order.attempt,
        )
        log.info("purge not carried out: the request is in use again", order_id=str(order.id), reason=item.not_purged)
    order.confirmed_count += 1
    if order.confirmed_count >= order.request_count:
        order.completed_at, order.next_send_at = now, None
    await session.flush()
    await purge_log.append(session, [record], now)


async def _order_again_if_still_due(session: AsyncSession, item: PurgeItem) -> None:
    """The exchange kept the data of a request this service still holds due under this order: the
    event that reopened (or closed again) the request has not reached it yet. The deadline is freed
    from the order, so the next pass orders it again if that event still has not come (it suspends or
    moves the deadline when it does); the purge is never forgotten."""
    row = await session.get(RequestDeadline, item.request_id, with_for_update=True)
    if row is not None and row.order_id == item.order_id:
        row.order_id = None


@dataclass(frozen=True)
class OverduePurge:
    """A purge unconfirmed past its deadline plus ``retention_overdue_after`` (must be none)."""

    request_id: uuid.UUID
    due_at: datetime
    order_id: uuid.UUID | None  # None: due but never ordered (the scheduler is not running)
    ordered_at: datetime | None
    attempts: int
    reported_at: datetime | None


async def overdue_purges(session: AsyncSession, settings: Settings, now: datetime) -> list[OverduePurge]:
    """Every overdue purge, ordered or not, oldest deadline first."""
    threshold = overdue_threshold(settings, now)
    ordered = await session.execute(
        select(PurgeItem, PurgeOrder.issued_at, PurgeOrder.attempt)
        .join(PurgeOrder, PurgeOrder.id == PurgeItem.order_id)
        .where(PurgeItem.confirmed_at.is_(None), PurgeItem.due_at <= threshold)
    )
    found = [
        OverduePurge(item.request_id, item.due_at, item.order_id, issued_at, attempts, item.overdue_reported_at)
        for item, issued_at, attempts in ordered
    ]
    unordered = await session.scalars(
        select(RequestDeadline).where(RequestDeadline.order_id.is_(None), RequestDeadline.due_at <= threshold)
    )
    found += [OverduePurge(row.request_id, row.due_at, None, None, 0, None) for row in unordered if row.due_at]
    found += [
        OverduePurge(row.request_id, deadline.due_at, None, None, 0, None)
        for row, deadline in await unsettled_deadlines(session, settings)
        if deadline.due_at <= threshold
    ]
    return sorted(found, key=lambda p: (p.due_at, str(p.request_id), str(p.order_id)))


@dataclass(frozen=True)
class PurgeCounts:
    pending: int
    overdue: int


async def purge_counts(session: AsyncSession, settings: Settings, now: datetime) -> PurgeCounts:
    """How many purges are unconfirmed, and how many of them are overdue (which must be none)."""
    threshold = overdue_threshold(settings, now)
    unconfirmed = PurgeItem.confirmed_at.is_(None)
    pending = await session.scalar(select(func.count()).select_from(PurgeItem).where(unconfirmed))
    overdue = await session.scalar(
        select(func.count()).select_from(PurgeItem).where(unconfirmed, PurgeItem.due_at <= threshold)
    )
    unordered = RequestDeadline.order_id.is_(None)
    due = await session.scalar(
        select(func.count()).select_from(RequestDeadline).where(unordered, RequestDeadline.due_at <= now)
    )
    due_overdue = await session.scalar(
        select(func.count()).select_from(RequestDeadline).where(unordered, RequestDeadline.due_at <= threshold)
    )
    fresh = await unsettled_deadlines(session, settings)
    return PurgeCounts(
        pending=int(pending or 0) + int(due or 0) + sum(1 for _, d in fresh if d.due_at <= now),
        overdue=int(overdue or 0) + int(due_overdue or 0) + sum(1 for _, d in fresh if d.due_at <= threshold),
    )
