"""Purge on the retention service's order (rule P2): the subject's data, answers to personal-data
questions and free-text answers, every free text written on the request and its attachments are
deleted; the non-personal skeleton (states, dates, areas, parties) stays for statistics. Each
request is confirmed with what was deleted; a re-sent order is confirmed again, deleting nothing.

Only data that are due are deleted: a request closed or withdrawn at least ``retention_period``
ago, or a draft never sent and left for ``retention_draft_period``. An order may reach the exchange
after the requester reopened the request (the ``reopened`` event still on its way to the retention
service, or an old order sent again): such a request is in use, so nothing is deleted and the order
is confirmed as not purged (``request_open``, or ``not_due`` when it was closed again and its new
deadline is still ahead). The retention service orders again when the new deadline comes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

import isodate
from sqlalchemy import delete, func, select, update

from services.exchange.models import (
    Answer,
    Attachment,
    AttachmentContent,
    Message,
    Purge,
    ReferralOpinion,
    Request,
    State,
    SubjectValue,
    Transition,
)
from shared.contracts.exchange import PERSONAL_DATA_PURGED, PersonalDataPurged
from shared.contracts.retention import PurgeOrder
from shared.database import as_utc
from shared.outbox import UnitOfWork
from shared.settings import Settings

Period: TypeAlias = timedelta | isodate.Duration

# Why an order was confirmed without deleting anything (``PersonalDataPurged.not_purged``).
NOT_PURGED_REQUEST_OPEN = "request_open"
NOT_PURGED_NOT_DUE = "not_due"


@dataclass(frozen=True)
class RetentionPeriods:
    """The shared ``retention_period`` (after closure, rule P2) and ``retention_draft_period`` (a
    draft never sent), as the retention service applies them; months are calendar months."""

    closure: Period
    draft: Period

    @classmethod
    def of(cls, settings: Settings | None = None) -> RetentionPeriods:
        """From the service's ``settings`` (a unit of work's); without them (a unit of work made
        outside a running service), from the environment as the service would read it."""
        settings = settings or Settings()
        return cls(settings.duration("retention_period"), settings.duration("retention_draft_period"))


def retention_deadline(request: Request, period: Period) -> datetime | None:
    """When a closed or withdrawn request's personal data are due for deletion; None while open."""
    if request.state not in (State.closed, State.withdrawn) or request.closed_at is None:
        return None
    deadline: datetime = as_utc(request.closed_at) + period
    return deadline


def why_not_purged(
    request: Request, periods: RetentionPeriods, now: datetime, draft_since: datetime | None = None
) -> str | None:
    """None when the request's data are due (or already gone); otherwise why they are kept.
    ``draft_since``: when a draft became one (started, or rejected back into a draft, rule E3)."""
    if request.purged_at is not None:
        return None
    if request.state == State.draft and request.sent_at is None:
        # A draft never sent is due ``retention_draft_period`` after it became a draft; one rejected
        # back into a draft after the order was issued starts a new period.
        since = as_utc(draft_since or request.created_at)
        return NOT_PURGED_NOT_DUE if since + periods.draft > now else None
    deadline = retention_deadline(request, periods.closure)
    if deadline is None:
        return NOT_PURGED_REQUEST_OPEN  # reopened, or otherwise in use: its data are needed
    if deadline > now:
        return NOT_PURGED_NOT_DUE  # closed again after a reopening: a later deadline applies
    return None


async def _draft_since(uow: UnitOfWork, request: Request) -> datetime | None:
    """When the draft last became one: its latest transition into the draft state."""
    if request.state != State.draft:
        return None
    since: datetime | None = await uow.session.scalar(
        select(func.max(Transition.at)).where(Transition.request_id == request.id, Transition.to_state == State.draft)
    )
    return since


async def purge_requests(uow: UnitOfWork, order: PurgeOrder, periods: RetentionPeriods) -> None:
    now = uow.clock.now()
    for request_id in order.request_ids:
        done = await uow.session.get(Purge, request_id)
        if done is None:
            # Locked, so a reopening in another transaction waits for this decision (or this for it).
            request = await uow.session.get(Request, request_id, with_for_update=True)
            reason = (
                why_not_purged(request, periods, now, await _draft_since(uow, request)) if request is not None else None
            )
            if reason is not None:
                await uow.emit(
                    PERSONAL_DATA_PURGED,
                    PersonalDataPurged(
                        order_id=order.order_id, request_id=request_id, deleted={}, purged_at=now, not_purged=reason
                    ),
                )
                continue
            deleted = await _purge_one(uow, request_id)
            done = Purge(request_id=request_id, order_id=order.order_id, deleted=deleted, purged_at=now)
            uow.session.add(done)
        await uow.emit(
            PERSONAL_DATA_PURGED,
            PersonalDataPurged(
                order_id=order.order_id, request_id=request_id, deleted=done.deleted, purged_at=done.purged_at
            ),
        )


async def _purge_one(uow: UnitOfWork, request_id: uuid.UUID) -> dict[str, int]:
    session = uow.session
    attachments = select(Attachment.id).where(Attachment.request_id == request_id)
    counts = {
        "subject_values": (await session.execute(delete(SubjectValue).where(SubjectValue.request_id == request_id))),
        "personal_answers": (
            await session.execute(delete(Answer).where(Answer.request_id == request_id, Answer.personal_data.is_(True)))
        ),
        "attachment_contents": (
            await session.execute(delete(AttachmentContent).where(AttachmentContent.attachment_id.in_(attachments)))
        ),
        "attachments": (await session.execute(delete(Attachment).where(Attachment.request_id == request_id))),
    }
    await session.execute(update(Transition).where(Transition.request_id == request_id).values(message_id=None))
    await session.execute(
        update(ReferralOpinion).where(ReferralOpinion.request_id == request_id).values(message_id=None)
    )
    counts["messages"] = await session.execute(delete(Message).where(Message.request_id == request_id))
    await session.execute(update(Request).where(Request.id == request_id).values(purged_at=uow.clock.now()))
    return {kind: int(result.rowcount or 0) for kind, result in counts.items()}  # type: ignore[attr-defined]
