"""Who sees what of a request (rules P3, P4, S4, S5, E1): each reader in their own language.

- users of the two authorities involved see everything, and each read is logged (P3);
- a coordinator to whom either authority granted full view sees the details, never personal data;
- other request coordinators, referred coordinators and linked authorities see an overview (P4);
- everyone else learns nothing, not even that the request exists.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from services.exchange.lifecycle import UNANSWERED, Caller, handles_for_a_party, question_set_of
from services.exchange.models import (
    Answer,
    Attachment,
    KnownAuthority,
    Message,
    Request,
    State,
    SubjectValue,
    Transition,
)
from services.exchange.question_sets import QuestionType, common_labels
from services.exchange.read_model import full_view_coordinator_ids, request_coordinator_ids
from shared.outbox import UnitOfWork


class Access(StrEnum):
    none = "none"
    overview = "overview"
    details = "details"  # without personal data
    full = "full"


async def access_of(uow: UnitOfWork, caller: Caller, request: Request) -> Access:
    mine = caller.authority_id
    # Rules P3 and S9: of the two authorities, those who send and answer the request (request
    # handlers, the responding side's allocators) reach its personal data; their colleagues
    # (basic users, handlers of other areas, local data administrators) see the overview.
    party_access = Access.full if handles_for_a_party(caller, request) else Access.overview
    if mine == request.requesting_authority_id:
        return party_access
    if request.state == State.draft:
        return Access.none  # a draft is its own authority's alone
    # Rule E3: a request awaiting its coordinator's approval has not been sent on yet; the
    # responding side (the authority, its coordinators, its linked authorities) does not see it.
    sent_on = request.state != State.awaiting_request_approval
    if mine == request.responding_authority_id:
        return party_access if sent_on else Access.none
    parties = [
        await uow.session.get(KnownAuthority, request.requesting_authority_id),
        await uow.session.get(KnownAuthority, request.responding_authority_id)
        if request.responding_authority_id and sent_on
        else None,
    ]
    for party in parties:
        if party is not None and mine in full_view_coordinator_ids(party, request.area):
            return Access.details
    for party in parties:
        if party is None:
            continue
        if mine in request_coordinator_ids(party, request.area) or str(mine) in party.links:
            return Access.overview
    if str(mine) in request.referral_coordinator_ids:
        return Access.overview
    return Access.none


class Overview(BaseModel):
    """What linked authorities, basic overviews and coordinators see: state, dates, area, parties."""

    id: uuid.UUID
    reference: str
    area: str
    state: str
    requesting_authority_id: uuid.UUID
    responding_authority_id: uuid.UUID | None
    created_at: datetime
    sent_at: datetime | None
    reply_date: date | None
    proposed_reply_date: date | None
    answered_at: datetime | None
    closed_at: datetime | None
    overdue: bool
    parent_request_id: uuid.UUID | None
    access: Access


class QuestionView(BaseModel):
    id: str
    type: str
    text: str
    personal_data: bool
    options: dict[str, str]
    forwarded_to_request_id: uuid.UUID | None
    answer: Any | None = None
    answer_label: str | list[str] | None = None
    answer_language: str | None = None
    answer_translation: str | None = None  # of a free-text answer, on request (machine translation)


class SubjectView(BaseModel):
    field_id: str
    label: str
    value: str


class MessageView(BaseModel):
    kind: str
    text: str
    language: str
    author_authority_id: uuid.UUID
    created_at: datetime
    translation: str | None = None


class AttachmentView(BaseModel):
    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    uploaded_at: datetime


class TransitionView(BaseModel):
    action: str
    from_state: str | None
    to_state: str
    actor_user_id: uuid.UUID | None
    actor_authority_id: uuid.UUID | None
    at: datetime


class RequestView(Overview):
    """Details (coordinators with full view: no personal data) or everything (the two parties)."""

    language: str
    allocated_user_id: uuid.UUID | None
    approving_coordinator_id: uuid.UUID | None
    referral_coordinator_ids: list[uuid.UUID]
    questions: list[QuestionView]
    transitions: list[TransitionView]
    subject: list[SubjectView] | None = None
    messages: list[MessageView] | None = None
    attachments: list[AttachmentView] | None = None
    personal_data_purged: bool


def is_overdue(request: Any, today: date) -> bool:
    unanswered = request.state in UNANSWERED
    return bool(unanswered and request.reply_date and request.reply_date < today)


# What an overview shows, for Core selects that need no ORM entity (lists of many requests).
OVERVIEW_COLUMNS = (
    Request.id,
    Request.reference,
    Request.area,
    Request.state,
    Request.requesting_authority_id,
    Request.responding_authority_id,
    Request.created_at,
    Request.sent_at,
    Request.reply_date,
    Request.proposed_reply_date,
    Request.answered_at,
    Request.closed_at,
    Request.parent_request_id,
)


def overview_fields(request: Any, access: Access, today: date) -> dict[str, Any]:
    """The fields of an :class:`Overview` of ``request`` (a :class:`Request`, or a row of
    :data:`OVERVIEW_COLUMNS`), to build one or a :class:`RequestView` from."""
    return {
        "id": request.id,
        "reference": request.reference,
        "area": request.area,
        "state": request.state,
        "requesting_authority_id": request.requesting_authority_id,
        "responding_authority_id": request.responding_authority_id,
        "created_at": request.created_at,
        "sent_at": request.sent_at,
        "reply_date": request.reply_date,
        "proposed_reply_date": request.proposed_reply_date,
        "answered_at": request.answered_at,
        "closed_at": request.closed_at,
        "overdue": is_overdue(request, today),
        "parent_request_id": request.parent_request_id,
        "access": access,
    }


def overview(request: Any, access: Access, today: date) -> Overview:
    """The overview of a loaded request, or of a row of :data:`OVERVIEW_COLUMNS`."""
    return Overview(**overview_fields(request, access, today))


def _label(question_type: QuestionType, options: dict[str, str], value: Any, language: str) -> Any:
    if question_type.common_answers and isinstance(value, str):
        return common_labels().label_in(value, language)
    if question_type == QuestionType.SINGLE_CHOICE:
        return options.get(value)
    if question_type == QuestionType.MULTIPLE_CHOICE and isinstance(value, list):
        return [options.get(v, v) for v in value]
    return None


async def detailed(uow: UnitOfWork, request: Request, access: Access, language: str) -> RequestView:
    """The request in ``language``: question texts and options translated, free text as written."""
    qs = question_set_of(request)
    with_personal = access == Access.full
    # Rows, not ORM objects, below: a view only reads them, and this runs on every transition.
    answers = {
        a.question_id: a
        for a in (
            await uow.session.execute(
                select(Answer.question_id, Answer.value, Answer.language, Answer.personal_data).where(
                    Answer.request_id == request.id
                )
            )
        ).all()
        if with_personal or not a.personal_data
    }
    questions = []
    for chosen in request.questions:
        question = qs.question(chosen.question_id)
        options = {o.id: o.label_in(language) for o in question.options}
        answer = answers.get(chosen.question_id)
        questions.append(
            QuestionView(
                id=question.id,
                type=question.type,
                text=question.text_in(language),
                personal_data=question.personal_data,
                options=options,
                forwarded_to_request_id=chosen.forwarded_to_request_id,
                answer=answer.value if answer else None,
                answer_label=_label(question.type, options, answer.value, language) if answer else None,
                answer_language=answer.language if answer else None,
            )
        )
    transitions = (
        await uow.session.execute(
            select(
                Transition.action,
                Transition.from_state,
                Transition.to_state,
                Transition.actor_user_id,
                Transition.actor_authority_id,
                Transition.at,
            )
            .where(Transition.request_id == request.id)
            .order_by(Transition.id)
        )
    ).all()
    view = RequestView(
        **overview_fields(request, access, uow.clock.now().date()),
        language=language,
        allocated_user_id=request.allocated_user_id,
        approving_coordinator_id=request.approving_coordinator_id,
        referral_coordinator_ids=[uuid.UUID(c) for c in request.referral_coordinator_ids],
        questions=questions,
        transitions=[
            TransitionView(
                action=t.action,
                from_state=t.from_state,
                to_state=t.to_state,
                actor_user_id=t.actor_user_id,
                actor_authority_id=t.actor_authority_id,
                at=t.at,
            )
            for t in transitions
        ],
        personal_data_purged=request.purged_at is not None,
    )
    if not with_personal:
        return view
    subject = (
        await uow.session.execute(
            select(SubjectValue.field_id, SubjectValue.value).where(SubjectValue.request_id == request.id)
        )
    ).all()
    field_order = [f.id for f in qs.subject_fields]
    view.subject = [
        SubjectView(field_id=s.field_id, label=qs.subject_field(s.field_id).label_in(language), value=s.value)
        for s in sorted(subject, key=lambda s: field_order.index(s.field_id))
    ]
    messages = (
        await uow.session.execute(
            select(Message.kind, Message.text, Message.language, Message.author_authority_id, Message.created_at)
            .where(Message.request_id == request.id)
            .order_by(Message.id)
        )
    ).all()
    view.messages = [
        MessageView(
            kind=m.kind,
            text=m.text,
            language=m.language,
            author_authority_id=m.author_authority_id,
            created_at=m.created_at,
        )
        for m in messages
    ]
    attachments = (
        await uow.session.execute(
            select(Attachment.id, Attachment.filename, Attachment.content_type, Attachment.size, Attachment.uploaded_at)
            .where(Attachment.request_id == request.id)
            .order_by(Attachment.uploaded_at)
        )
    ).all()
    view.attachments = [
        AttachmentView(
            id=a.id, filename=a.filename, content_type=a.content_type, size=a.size, uploaded_at=a.uploaded_at
        )
        for a in attachments
    ]
    return view
