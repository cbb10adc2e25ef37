"""Purge on the retention service's order (rule P2): the subject's data, answers to personal-data
questions and free-text answers, every free text written on the request and its attachments are
deleted; the non-personal skeleton (states, dates, areas, parties) stays for statistics. Each
request is confirmed with what was deleted; a re-sent order is confirmed again, deleting nothing."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from services.exchange.models import (
    Answer,
    Attachment,
    AttachmentContent,
    Message,
    Purge,
    ReferralOpinion,
    Request,
    SubjectValue,
    Transition,
)
from shared.contracts.exchange import PERSONAL_DATA_PURGED, PersonalDataPurged
from shared.contracts.retention import PurgeOrder
from shared.outbox import UnitOfWork


async def purge_requests(uow: UnitOfWork, order: PurgeOrder) -> None:
    for request_id in order.request_ids:
        done = await uow.session.get(Purge, request_id)
        if done is None:
            deleted = await _purge_one(uow, request_id)
            done = Purge(request_id=request_id, order_id=order.order_id, deleted=deleted, purged_at=uow.clock.now())
            uow.session.add(done)
        await uow.emit(
            PERSONAL_DATA_PURGED,
            PersonalDataPurged(
                order_id=order.order_id, request_id=request_id, deleted=done.deleted, purged_at=done.purged_at
            ),
        )


async def _purge_one(uow: UnitOfWork, request_id: object) -> dict[str, int]:
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
