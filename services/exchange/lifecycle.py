"""The life of a request (rules E1–E4, S8, S14, S15): each transition names the roles allowed and
checks its preconditions; each is recorded (who, when, from, to) and published as an event in the
same transaction. Nothing here knows HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import joinedload

from services.exchange.models import (
    Answer,
    Attachment,
    AttachmentContent,
    KnownAuthority,
    KnownUser,
    Message,
    PersonalDataRead,
    ReferenceCounter,
    ReferralOpinion,
    Request,
    RequestQuestion,
    State,
    SubjectValue,
    Transition,
)
from services.exchange.purge import Period, RetentionPeriods, retention_deadline
from services.exchange.question_sets import Question, QuestionSet, QuestionType, question_set
from services.exchange.read_model import coordinator_setting, has_role, request_coordinator_ids
from shared.auth import Principal
from shared.contracts import exchange as events
from shared.contracts.exchange import RequestChange
from shared.errors import ApiError
from shared.events.envelope import Contract
from shared.outbox import UnitOfWork

MAX_FREE_TEXT = 10_000

# Written with Core inserts: nothing reads these rows back in the transaction that writes them.
TRANSITIONS = cast(Table, Transition.__table__)
PERSONAL_DATA_READS = cast(Table, PersonalDataRead.__table__)


def refused(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def invalid(code: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(422, code, message, field=field)


def wrong_state(request: Request, action: str) -> ApiError:
    return ApiError(409, "transition_not_allowed", f"cannot {action} a request that is {request.state}", field="state")


@dataclass(frozen=True)
class Caller:
    """Who calls, from their access token."""

    principal: Principal

    @cached_property
    def user_id(self) -> uuid.UUID:
        return uuid.UUID(self.principal.user_id)

    @cached_property
    def authority_id(self) -> uuid.UUID:
        return uuid.UUID(self.principal.authority_id)

    @property
    def language(self) -> str:
        return self.principal.language

    def has(self, role: str, area: str) -> bool:
        return self.principal.has_role(role, area)


# -- loading ---------------------------------------------------------------------------------------


async def load_request(uow: UnitOfWork, request_id: uuid.UUID) -> Request:
    # Its questions in the same statement: every transition and view reads them.
    request = await uow.session.get(Request, request_id, options=[joinedload(Request.questions)])
    if request is None:
        raise ApiError(404, "not_found", "no such request", field="request_id")
    return request


async def authority(uow: UnitOfWork, authority_id: uuid.UUID | None, field: str = "authority_id") -> KnownAuthority:
    known = await uow.session.get(KnownAuthority, authority_id) if authority_id else None
    if known is None:
        raise invalid("unknown_authority", "no such authority in the directory", field)
    return known


async def load_authorities(uow: UnitOfWork, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, KnownAuthority]:
    """Several read-model authorities in one statement. While the caller holds the result,
    ``session.get`` finds them in the session without asking the database again (the session
    keeps only weak references to unchanged objects)."""
    wanted = {authority_id for authority_id in ids if authority_id is not None}
    if not wanted:
        return {}
    found = await uow.session.scalars(select(KnownAuthority).where(KnownAuthority.id.in_(wanted)))
    return {known.id: known for known in found.all()}


def question_set_of(request: Request) -> QuestionSet:
    return question_set(request.area, request.question_set_version)


# -- who is who on a request -------------------------------------------------------------------------


def is_requesting_handler(caller: Caller, request: Request) -> bool:
    return caller.authority_id == request.requesting_authority_id and caller.has("request_handler", request.area)


def is_responding_handler(caller: Caller, request: Request, responder: KnownAuthority) -> bool:
    """Rule E2: with allocation on, the allocated handler answers; otherwise any request handler."""
    if caller.authority_id != request.responding_authority_id:
        return False
    if responder.allocation_enabled:
        return request.allocated_user_id == caller.user_id or caller.has("allocator", request.area)
    return caller.has("request_handler", request.area)


def handles_for_a_party(caller: Caller, request: Request) -> bool:
    """Rule S9: comments and documents come from those who send and answer requests: the request
    handlers of either authority in the request's area, and the responding side's allocators (E2)."""
    if caller.authority_id == request.requesting_authority_id:
        return caller.has("request_handler", request.area)
    if caller.authority_id == request.responding_authority_id:
        return caller.has("request_handler", request.area) or caller.has("allocator", request.area)
    return False


def is_allocator(caller: Caller, request: Request) -> bool:
    return caller.authority_id == request.responding_authority_id and caller.has("allocator", request.area)


def acts_for_coordinator(caller: Caller, coordinator_id: uuid.UUID | None, area: str) -> bool:
    """A user of the coordinator handling requests (or administering data) in the area."""
    return (
        coordinator_id is not None
        and caller.authority_id == coordinator_id
        and (caller.has("request_handler", area) or caller.has("data_administrator", area))
    )


async def approving_coordinator(uow: UnitOfWork, authority_id: uuid.UUID, area: str, kind: str) -> uuid.UUID | None:
    """Rule S15: the first request coordinator of the authority for ``area`` that approves ``kind``
    (``approve_requests`` or ``approve_replies``)."""
    known = await uow.session.get(KnownAuthority, authority_id)
    if known is None:
        return None
    coordinator_ids = request_coordinator_ids(known, area)
    coordinators = await load_authorities(uow, coordinator_ids)
    for coordinator_id in coordinator_ids:
        coordinator = coordinators.get(coordinator_id)
        if coordinator is not None and coordinator_setting(coordinator, area)[kind]:
            return coordinator_id
    return None


# -- recording and publishing -----------------------------------------------------------------------


async def _record(
    uow: UnitOfWork,
    request: Request,
    contract: Contract[RequestChange],
    action: str,
    caller: Caller | None,
    previous: State | None,
    *,
    message: Message | None = None,
    previously_allocated_user_id: uuid.UUID | None = None,
    forwarded_as: Request | None = None,
) -> None:
    """Invariant 5 and rule E1: the transition is recorded and published in this transaction."""
    now = uow.clock.now()
    request.version += 1
    await _log_transition(uow, request, action, caller, previous, now, message=message)
    change = change_of(
        request,
        previous,
        caller,
        now,
        previously_allocated_user_id=previously_allocated_user_id,
        forwarded_as=forwarded_as,
    )
    await uow.emit(contract, change)


async def _log_transition(
    uow: UnitOfWork,
    request: Request,
    action: str,
    caller: Caller | None,
    previous: State | None,
    now: datetime,
    *,
    message: Message | None = None,
) -> None:
    """Invariant 5: who, when, from and to."""
    await uow.session.execute(
        insert(TRANSITIONS).values(
            request_id=request.id,
            action=action,
            from_state=previous,
            to_state=request.state,
            actor_user_id=caller.user_id if caller else None,
            actor_authority_id=caller.authority_id if caller else None,
            at=now,
            message_id=message.id if message else None,
        )
    )


def change_of(
    request: Request,
    previous: State | None,
    caller: Caller | None,
    now: datetime,
    *,
    previously_allocated_user_id: uuid.UUID | None = None,
    forwarded_as: Request | None = None,
) -> RequestChange:
    """The event of a transition. ``previously_allocated_user_id`` is set only by a re-allocation
    (rule E2: the handler the request was taken from is told); ``forwarded_as`` only when some questions
    were forwarded (the request they now form, so that the requesting side learns where they went, rule
    E1). Every other transition leaves them null."""
    return RequestChange(
        request_id=request.id,
        reference=request.reference,
        area=request.area,
        state=request.state,
        previous_state=previous,
        requesting_authority_id=request.requesting_authority_id,
        responding_authority_id=request.responding_authority_id,
        requester_user_id=request.requester_user_id,
        allocated_user_id=request.allocated_user_id,
        previously_allocated_user_id=previously_allocated_user_id,
        forwarded_to_authority_id=forwarded_as.responding_authority_id if forwarded_as else None,
        forwarded_as_request_id=forwarded_as.id if forwarded_as else None,
        forwarded_as_reference=forwarded_as.reference if forwarded_as else None,
        reply_date=request.reply_date,
        proposed_reply_date=request.proposed_reply_date,
        approving_coordinator_id=request.approving_coordinator_id,
        referral_coordinator_ids=[uuid.UUID(c) for c in request.referral_coordinator_ids],
        actor_user_id=caller.user_id if caller else None,
        actor_authority_id=caller.authority_id if caller else None,
        occurred_at=now,
        closed_at=request.closed_at,
        version=request.version,
    )


async def _message(uow: UnitOfWork, request: Request, caller: Caller, kind: str, text: str | None) -> Message | None:
    if not text:
        return None
    if len(text) > MAX_FREE_TEXT:
        raise invalid("text_too_long", f"free text is limited to {MAX_FREE_TEXT} characters", "comment")
    message = Message(
        request_id=request.id,
        kind=kind,
        text=text,
        language=caller.language,
        author_user_id=caller.user_id,
        author_authority_id=caller.authority_id,
        created_at=uow.clock.now(),
    )
    uow.session.add(message)
    await uow.session.flush()
    return message


async def _move(
    uow: UnitOfWork,
    request: Request,
    to: State,
    contract: Contract[RequestChange],
    action: str,
    caller: Caller | None,
    *,
    comment: str | None = None,
    comment_kind: str = "comment",
) -> Request:
    previous = State(request.state)
    request.state = to
    message = await _message(uow, request, caller, comment_kind, comment) if caller else None
    await _record(uow, request, contract, action, caller, previous, message=message)
    return request


# -- references ---------------------------------------------------------------------------------------


async def next_reference(uow: UnitOfWork, now: datetime) -> str:
    """``REQ-<year>-<number>``, numbered per year without gaps racing each other.

    The year's counter row stays locked until the transaction ends, and every request written
    that year waits for it: take the number as the last step before commit."""
    dialect = uow.session.get_bind().dialect.name
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = upsert(ReferenceCounter).values(year=now.year, last=1)
    number = await uow.session.scalar(
        statement.on_conflict_do_update(index_elements=["year"], set_={"last": ReferenceCounter.last + 1}).returning(
            ReferenceCounter.last
        )
    )
    return f"REQ-{now.year}-{number:06d}"


def _unnumbered(request_id: uuid.UUID) -> str:
    """A stand-in reference, unique and never seen outside the transaction that writes the
    request: the real number is taken just before commit (:func:`next_reference`)."""
    return f"~{request_id.hex}"


# -- drafting (rule E1) -----------------------------------------------------------------------------------


def _check_questions(qs: QuestionSet, question_ids: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(question_ids))
    for question_id in chosen:
        try:
            qs.question(question_id)
        except KeyError:
            raise invalid(
                "question_not_in_set", f"{question_id!r} is not a question of the {qs.area} set", "question_ids"
            ) from None
    return chosen


def _check_subject(qs: QuestionSet, subject: dict[str, str]) -> dict[str, str]:
    for field_id, value in subject.items():
        try:
            field = qs.subject_field(field_id)
        except KeyError:
            raise invalid(
                "unknown_subject_field", f"{field_id!r} is not a subject field", f"subject.{field_id}"
            ) from None
        if field.type == QuestionType.DATE:
            _parse_date(value, f"subject.{field_id}")
        if len(value) > 1000:
            raise invalid("text_too_long", "subject values are limited to 1000 characters", f"subject.{field_id}")
    return subject


def _parse_date(value: Any, field: str) -> date:
    if not isinstance(value, str):
        raise invalid("wrong_answer_type", "a date is written YYYY-MM-DD", field)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid("wrong_answer_type", "a date is written YYYY-MM-DD", field) from None


async def _check_responder(uow: UnitOfWork, caller: Caller, area: str, responder_id: uuid.UUID | None) -> None:
    if responder_id is None:
        return
    _check_responding_authority(caller, area, await authority(uow, responder_id, "responding_authority_id"))


def _check_responding_authority(caller: Caller, area: str, responder: KnownAuthority | None) -> None:
    if responder is None:
        raise invalid("unknown_authority", "no such authority in the directory", "responding_authority_id")
    if responder.id == caller.authority_id:
        raise invalid(
            "responding_authority_is_requester", "a request goes to another authority", "responding_authority_id"
        )
    if responder.status != "active":
        raise invalid(
            "responding_authority_inactive", "the responding authority is not active", "responding_authority_id"
        )
    if area not in responder.areas:
        raise invalid(
            "responding_authority_lacks_area",
            f"the responding authority does not work in {area!r}",
            "responding_authority_id",
        )


async def create_draft(
    uow: UnitOfWork,
    caller: Caller,
    *,
    area: str,
    responding_authority_id: uuid.UUID | None,
    question_ids: list[str],
    subject: dict[str, str],
    reply_date: date | None,
    comment: str | None,
    idempotency_key: str | None = None,
) -> Request:
    """Rule E1: a request handler writes a request in their own language from the area's set."""
    try:
        qs = question_set(area)
    except KeyError:
        raise invalid("unknown_legislative_area", f"no question set for {area!r}", "area") from None
    if not caller.has("request_handler", area):
        raise refused(f"only request handlers in {area!r} write requests")
    chosen = _check_questions(qs, question_ids)
    _check_subject(qs, subject)
    await _check_responder(uow, caller, area, responding_authority_id)
    now = uow.clock.now()
    request_id = uuid.uuid4()
    request = Request(
        id=request_id,
        reference=_unnumbered(request_id),
        area=area,
        question_set_version=qs.version,
        state=State.draft,
        requesting_authority_id=caller.authority_id,
        requester_user_id=caller.user_id,
        responding_authority_id=responding_authority_id,
        requester_language=caller.language,
        reply_date=reply_date,
        created_at=now,
        idempotency_key=idempotency_key,
        referral_coordinator_ids=[],
        version=1,
    )
    request.questions = [RequestQuestion(question_id=q, position=i) for i, q in enumerate(chosen)]
    uow.session.add(request)
    await uow.session.flush()  # the rows below refer to it, and the session does not order them after it
    _store_subject(uow, request, qs, subject)
    message = await _message(uow, request, caller, "comment", comment)
    await _log_transition(uow, request, "drafted", caller, None, now, message=message)
    request.reference = await next_reference(uow, now)
    await uow.emit(events.REQUEST_DRAFTED, change_of(request, None, caller, now))
    return request


def _store_subject(uow: UnitOfWork, request: Request, qs: QuestionSet, subject: dict[str, str]) -> None:
    for field_id, value in subject.items():
        uow.session.add(
            SubjectValue(
                request_id=request.id,
                field_id=field_id,
                value=value,
                personal_data=qs.subject_field(field_id).personal_data,
            )
        )


async def edit_draft(
    uow: UnitOfWork,
    caller: Caller,
    request: Request,
    *,
    responding_authority_id: uuid.UUID | None,
    question_ids: list[str] | None,
    subject: dict[str, str] | None,
    reply_date: date | None,
) -> Request:
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority's request handlers edit the draft")
    if request.state != State.draft:
        raise wrong_state(request, "edit")
    _refuse_purged_draft(request)
    qs = question_set_of(request)
    if responding_authority_id is not None:
        await _check_responder(uow, caller, request.area, responding_authority_id)
        request.responding_authority_id = responding_authority_id
    if question_ids is not None:
        chosen = _check_questions(qs, question_ids)
        request.questions.clear()
        await uow.session.flush()
        request.questions.extend(RequestQuestion(question_id=q, position=i) for i, q in enumerate(chosen))
    if subject is not None:
        _check_subject(qs, subject)
        await uow.session.execute(delete(SubjectValue).where(SubjectValue.request_id == request.id))
        _store_subject(uow, request, qs, subject)
    if reply_date is not None:
        request.reply_date = reply_date
    request.version += 1
    return request


async def delete_draft(uow: UnitOfWork, caller: Caller, request: Request) -> None:
    """A draft never sent is deleted with everything in it."""
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority's request handlers delete the draft")
    if request.state != State.draft or request.sent_at is not None:
        raise wrong_state(request, "delete")
    now = uow.clock.now()
    request.version += 1
    await uow.emit(events.REQUEST_DRAFT_DELETED, change_of(request, State.draft, caller, now))
    for table in (SubjectValue, Answer, Message, Transition, ReferralOpinion):
        await uow.session.execute(delete(table).where(table.request_id == request.id))  # type: ignore[attr-defined]
    attachment_ids = select(Attachment.id).where(Attachment.request_id == request.id)
    await uow.session.execute(delete(AttachmentContent).where(AttachmentContent.attachment_id.in_(attachment_ids)))
    await uow.session.execute(delete(Attachment).where(Attachment.request_id == request.id))
    await uow.session.delete(request)


# -- sending and approval (rules E1, E3) -----------------------------------------------------------------


def _refuse_purged_draft(request: Request) -> None:
    """A draft left unsent past its retention period lost its personal data (rule P2): it cannot be
    completed and sent as if nothing happened; the requester writes a new one."""
    if request.purged_at is not None:
        raise ApiError(409, "draft_purged", "this draft's data were deleted after its retention period; start anew")


async def send(uow: UnitOfWork, caller: Caller, request: Request) -> Request:
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority's request handlers send its requests")
    if request.state != State.draft:
        raise wrong_state(request, "send")
    _refuse_purged_draft(request)
    qs = question_set_of(request)
    if request.responding_authority_id is None:
        raise invalid("responding_authority_missing", "choose the responding authority", "responding_authority_id")
    # Both parties in one statement; held here, so approving_coordinator finds the requester in the session.
    parties = await load_authorities(uow, (request.responding_authority_id, request.requesting_authority_id))
    _check_responding_authority(caller, request.area, parties.get(request.responding_authority_id))
    if not request.questions:
        raise invalid("no_questions", "choose at least one question", "question_ids")
    present = set(
        (await uow.session.scalars(select(SubjectValue.field_id).where(SubjectValue.request_id == request.id))).all()
    )
    for field in qs.subject_fields:
        if field.required and field.id not in present:
            raise invalid("subject_field_missing", f"{field.id} is required", f"subject.{field.id}")
    today = uow.clock.now().date()
    if request.reply_date is None or request.reply_date <= today:
        raise invalid(
            "reply_date_not_in_future", "the reply date the requester needs must be after today", "reply_date"
        )
    approver = await approving_coordinator(uow, request.requesting_authority_id, request.area, "approve_requests")
    # Changed only after every read, so the request is written in one UPDATE, not flushed twice.
    request.sent_at = uow.clock.now()
    if approver is not None:
        request.approving_coordinator_id = approver
        return await _move(
            uow,
            request,
            State.awaiting_request_approval,
            events.REQUEST_SUBMITTED_FOR_APPROVAL,
            "sent_for_approval",
            caller,
        )
    return await _deliver(uow, request, caller, "sent")


async def _deliver(uow: UnitOfWork, request: Request, caller: Caller | None, action: str) -> Request:
    """The request reaches the responding authority (rule E5: its handlers or allocators are alerted)."""
    request.approving_coordinator_id = None
    request.received_at = uow.clock.now()
    request.allocated_user_id = None
    return await _move(uow, request, State.awaiting_acceptance, events.REQUEST_RECEIVED, action, caller)


async def approve_request(uow: UnitOfWork, caller: Caller, request: Request) -> Request:
    if request.state != State.awaiting_request_approval:
        raise wrong_state(request, "approve")
    if not acts_for_coordinator(caller, request.approving_coordinator_id, request.area):
        raise refused("only the approving coordinator approves this request (rule E3)")
    return await _deliver(uow, request, caller, "approved")


async def reject_request(uow: UnitOfWork, caller: Caller, request: Request, reason: str) -> Request:
    if request.state != State.awaiting_request_approval:
        raise wrong_state(request, "reject")
    if not acts_for_coordinator(caller, request.approving_coordinator_id, request.area):
        raise refused("only the approving coordinator rejects this request (rule E3)")
    request.approving_coordinator_id = None
    request.sent_at = None
    return await _move(
        uow, request, State.draft, events.REQUEST_REJECTED, "rejected", caller, comment=reason, comment_kind="rejection"
    )


async def withdraw(uow: UnitOfWork, caller: Caller, request: Request, reason: str | None) -> Request:
    """The requester can withdraw before acceptance."""
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority's request handlers withdraw its requests")
    if request.state not in (State.awaiting_request_approval, State.awaiting_acceptance):
        raise wrong_state(request, "withdraw")
    request.closed_at = uow.clock.now()
    return await _move(
        uow,
        request,
        State.withdrawn,
        events.REQUEST_WITHDRAWN,
        "withdrawn",
        caller,
        comment=reason,
        comment_kind="withdrawal",
    )


# -- the responding side (rules E1, E2) -----------------------------------------------------------------


async def _responder(uow: UnitOfWork, request: Request) -> KnownAuthority:
    return await authority(uow, request.responding_authority_id, "responding_authority_id")


async def accept(uow: UnitOfWork, caller: Caller, request: Request) -> Request:
    """The responding authority accepts, committing to answer every question."""
    if request.state != State.awaiting_acceptance:
        raise wrong_state(request, "accept")
    responder = await _responder(uow, request)
    if not (is_responding_handler(caller, request, responder) or is_allocator(caller, request)):
        raise refused("only the responding authority's request handlers or allocators accept")
    if request.proposed_reply_date is not None:
        raise ApiError(409, "reply_date_pending", "the requester has not yet answered the proposed reply date")
    request.accepted_at = uow.clock.now()
    return await _move(uow, request, State.in_progress, events.REQUEST_ACCEPTED, "accepted", caller)


async def allocate(uow: UnitOfWork, caller: Caller, request: Request, handler_id: uuid.UUID) -> Request:
    """Rule E2: an allocator allocates (or re-allocates) the request to one of its request handlers."""
    if request.state not in (State.awaiting_acceptance, State.in_progress, State.additional_information_requested):
        raise wrong_state(request, "allocate")
    responder = await _responder(uow, request)
    if not responder.allocation_enabled:
        raise ApiError(409, "allocation_off", "the responding authority does not allocate requests (rule S8)")
    if not is_allocator(caller, request):
        raise refused("only the responding authority's allocators allocate (rule E2)")
    handler = await uow.session.get(KnownUser, handler_id)
    if (
        handler is None
        or handler.authority_id != responder.id
        or handler.status != "active"
        or not has_role(handler, "request_handler", request.area)
    ):
        raise invalid("not_a_request_handler", "allocate to a request handler of the authority in this area", "user_id")
    if request.allocated_user_id == handler_id:
        raise ApiError(409, "already_allocated", "the request is already allocated to this handler")
    taken_from = request.allocated_user_id  # None on a first allocation
    request.allocated_user_id = handler_id
    previous = State(request.state)
    await _record(
        uow, request, events.REQUEST_ALLOCATED, "allocated", caller, previous, previously_allocated_user_id=taken_from
    )
    return request


async def forward(uow: UnitOfWork, caller: Caller, request: Request, to: uuid.UUID, comment: str | None) -> Request:
    """When not competent, the responding authority forwards the request to another authority (or
    its coordinator) of the same country, which has the legislative area."""
    if request.state != State.awaiting_acceptance:
        raise wrong_state(request, "forward")
    responder = await _responder(uow, request)
    if not (is_responding_handler(caller, request, responder) or is_allocator(caller, request)):
        raise refused("only the responding authority's request handlers or allocators forward")
    target = await authority(uow, to, "authority_id")
    if target.country != responder.country:
        raise invalid("forward_across_countries", "forward to an authority of the same country", "authority_id")
    if target.id in (responder.id, request.requesting_authority_id):
        raise invalid("forward_to_party", "forward to another authority", "authority_id")
    if request.area not in target.areas or target.status != "active":
        raise invalid("responding_authority_lacks_area", "that authority does not work in this area", "authority_id")
    request.responding_authority_id = target.id
    request.proposed_reply_date = None
    return await _deliver_forwarded(uow, request, caller, comment)


async def _deliver_forwarded(uow: UnitOfWork, request: Request, caller: Caller, comment: str | None) -> Request:
    request.received_at = uow.clock.now()
    request.allocated_user_id = None
    return await _move(
        uow,
        request,
        State.awaiting_acceptance,
        events.REQUEST_FORWARDED,
        "forwarded",
        caller,
        comment=comment,
        comment_kind="forwarding",
    )


async def forward_questions(
    uow: UnitOfWork, caller: Caller, request: Request, to: uuid.UUID, question_ids: list[str], comment: str | None
) -> Request:
    """Some questions go to another authority of the same country, as a request of their own that
    keeps the same requester; they leave this request."""
    if request.state not in (State.awaiting_acceptance, State.in_progress):
        raise wrong_state(request, "forward questions of")
    responder = await _responder(uow, request)
    if not is_responding_handler(caller, request, responder):
        raise refused("only the responding authority's request handlers forward questions")
    target = await authority(uow, to, "authority_id")
    if target.country != responder.country or target.id == responder.id or request.area not in target.areas:
        raise invalid(
            "forward_across_countries", "forward to another authority of the same country with the area", "authority_id"
        )
    open_questions = {q.question_id: q for q in request.questions if q.forwarded_to_request_id is None}
    chosen = list(dict.fromkeys(question_ids))
    if not chosen or any(q not in open_questions for q in chosen):
        raise invalid("question_not_in_request", "forward questions of this request only", "question_ids")
    if len(chosen) == len(open_questions):
        raise invalid("forward_whole_request", "to hand over every question, forward the request", "question_ids")
    now = uow.clock.now()
    child_id = uuid.uuid4()
    child = Request(
        id=child_id,
        reference=_unnumbered(child_id),
        area=request.area,
        question_set_version=request.question_set_version,
        state=State.awaiting_acceptance,
        requesting_authority_id=request.requesting_authority_id,
        requester_user_id=request.requester_user_id,
        responding_authority_id=target.id,
        requester_language=request.requester_language,
        reply_date=request.reply_date,
        parent_request_id=request.id,
        created_at=now,
        sent_at=now,
        received_at=now,
        referral_coordinator_ids=[],
        version=0,
    )
    child.questions = [RequestQuestion(question_id=q, position=i) for i, q in enumerate(chosen)]
    uow.session.add(child)
    await uow.session.flush()
    subject = (await uow.session.scalars(select(SubjectValue).where(SubjectValue.request_id == request.id))).all()
    for value in subject:
        uow.session.add(
            SubjectValue(
                request_id=child.id, field_id=value.field_id, value=value.value, personal_data=value.personal_data
            )
        )
    message = await _message(uow, child, caller, "forwarding", comment)
    child.reference = await next_reference(uow, now)
    await _record(uow, child, events.REQUEST_RECEIVED, "received_forwarded_questions", caller, None, message=message)
    for question_id in chosen:
        open_questions[question_id].forwarded_to_request_id = child.id
    previous = State(request.state)
    await _record(
        uow, request, events.REQUEST_QUESTIONS_FORWARDED, "questions_forwarded", caller, previous, forwarded_as=child
    )
    return child


async def propose_reply_date(
    uow: UnitOfWork, caller: Caller, request: Request, proposed: date, comment: str | None
) -> Request:
    if request.state not in (State.awaiting_acceptance, State.in_progress):
        raise wrong_state(request, "propose a reply date for")
    responder = await _responder(uow, request)
    if not (is_responding_handler(caller, request, responder) or is_allocator(caller, request)):
        raise refused("only the responding authority proposes another reply date")
    if proposed <= uow.clock.now().date():
        raise invalid("reply_date_not_in_future", "propose a date after today", "reply_date")
    request.proposed_reply_date = proposed
    previous = State(request.state)
    message = await _message(uow, request, caller, "reply_date", comment)
    await _record(uow, request, events.REPLY_DATE_PROPOSED, "reply_date_proposed", caller, previous, message=message)
    return request


async def answer_reply_date(uow: UnitOfWork, caller: Caller, request: Request, agree: bool) -> Request:
    if request.proposed_reply_date is None:
        raise ApiError(409, "no_reply_date_proposed", "no other reply date was proposed")
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority answers a proposed reply date")
    if agree:
        request.reply_date = request.proposed_reply_date
        request.overdue_notified_at = None
    request.proposed_reply_date = None
    previous = State(request.state)
    action = "reply_date_agreed" if agree else "reply_date_refused"
    await _record(uow, request, events.REPLY_DATE_ANSWERED, action, caller, previous)
    return request


# -- answering (rules E1, E3) ---------------------------------------------------------------------------


def check_answer(question: Question, value: Any, attachments: set[str]) -> Any:
    """An answer of the question's type, or a 422 naming the question."""
    field = f"answers.{question.id}"
    kind = question.type
    if kind in (QuestionType.YES_NO, QuestionType.YES_NO_UNKNOWN):
        if value not in kind.common_answers:
            raise invalid("wrong_answer_type", f"answer one of {', '.join(kind.common_answers)}", field)
    elif kind == QuestionType.FREE_TEXT:
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_FREE_TEXT:
            raise invalid("wrong_answer_type", f"answer with text of 1 to {MAX_FREE_TEXT} characters", field)
    elif kind == QuestionType.DATE:
        _parse_date(value, field)
    elif kind == QuestionType.SINGLE_CHOICE:
        if value not in {o.id for o in question.options}:
            raise invalid("wrong_answer_type", "answer with one of the question's options", field)
    elif kind == QuestionType.MULTIPLE_CHOICE:
        options = {o.id for o in question.options}
        if not isinstance(value, list) or not value or len(set(value)) != len(value) or not set(value) <= options:
            raise invalid("wrong_answer_type", "answer with a list of the question's options", field)
    elif kind == QuestionType.DOCUMENT and value not in attachments:
        raise invalid("wrong_answer_type", "answer with the id of a document attached to this request", field)
    return value


def _answerable(request: Request) -> dict[str, RequestQuestion]:
    return {q.question_id: q for q in request.questions if q.forwarded_to_request_id is None}


async def save_answers(uow: UnitOfWork, caller: Caller, request: Request, answers: dict[str, Any]) -> Request:
    """The answer, written per question in the responder's language."""
    if request.state not in (State.in_progress, State.additional_information_requested):
        raise wrong_state(request, "answer")
    responder = await _responder(uow, request)
    if not is_responding_handler(caller, request, responder):
        raise refused("only the responding handler answers (the allocated one when allocation is on)")
    qs = question_set_of(request)
    answerable = _answerable(request)
    attachments = {
        str(a)
        for a in (await uow.session.scalars(select(Attachment.id).where(Attachment.request_id == request.id))).all()
    }
    now = uow.clock.now()
    for question_id, value in answers.items():
        if question_id not in answerable:
            raise invalid(
                "question_not_in_request",
                f"{question_id!r} is not a question of this request",
                f"answers.{question_id}",
            )
        question = qs.question(question_id)
        checked = check_answer(question, value, attachments)
        existing = await uow.session.get(Answer, (request.id, question_id))
        if existing is None:
            existing = Answer(request_id=request.id, question_id=question_id)
            uow.session.add(existing)
        existing.value = checked
        existing.language = caller.language
        existing.personal_data = question.personal_data or question.type == QuestionType.FREE_TEXT
        existing.answered_by = caller.user_id
        existing.answered_at = now
    request.version += 1
    return request


async def submit_reply(uow: UnitOfWork, caller: Caller, request: Request, comment: str | None) -> Request:
    """Every question answered, the reply goes to the requester, or first to the coordinator that
    approves replies (rule E3)."""
    if request.state not in (State.in_progress, State.additional_information_requested):
        raise wrong_state(request, "reply to")
    responder = await _responder(uow, request)
    if not is_responding_handler(caller, request, responder):
        raise refused("only the responding handler replies")
    answered = set((await uow.session.scalars(select(Answer.question_id).where(Answer.request_id == request.id))).all())
    missing = sorted(set(_answerable(request)) - answered)
    if missing:
        raise invalid("questions_unanswered", f"answer every question first: {', '.join(missing)}", "answers")
    approver = await approving_coordinator(uow, responder.id, request.area, "approve_replies")
    if approver is not None:
        request.approving_coordinator_id = approver
        return await _move(
            uow,
            request,
            State.awaiting_reply_approval,
            events.REPLY_SUBMITTED_FOR_APPROVAL,
            "reply_sent_for_approval",
            caller,
            comment=comment,
        )
    return await _answered(uow, request, caller, "answered", comment)


async def _answered(uow: UnitOfWork, request: Request, caller: Caller, action: str, comment: str | None) -> Request:
    request.approving_coordinator_id = None
    request.answered_at = uow.clock.now()
    return await _move(uow, request, State.answered, events.REQUEST_ANSWERED, action, caller, comment=comment)


async def approve_reply(uow: UnitOfWork, caller: Caller, request: Request) -> Request:
    if request.state != State.awaiting_reply_approval:
        raise wrong_state(request, "approve the reply of")
    if not acts_for_coordinator(caller, request.approving_coordinator_id, request.area):
        raise refused("only the approving coordinator approves this reply (rule E3)")
    return await _answered(uow, request, caller, "reply_approved", None)


async def reject_reply(uow: UnitOfWork, caller: Caller, request: Request, reason: str) -> Request:
    if request.state != State.awaiting_reply_approval:
        raise wrong_state(request, "reject the reply of")
    if not acts_for_coordinator(caller, request.approving_coordinator_id, request.area):
        raise refused("only the approving coordinator rejects this reply (rule E3)")
    request.approving_coordinator_id = None
    return await _move(
        uow,
        request,
        State.in_progress,
        events.REPLY_REJECTED,
        "reply_rejected",
        caller,
        comment=reason,
        comment_kind="rejection",
    )


# -- after the answer (rule E4) ----------------------------------------------------------------------------


async def close(uow: UnitOfWork, caller: Caller, request: Request, comment: str | None) -> Request:
    """The requester accepts the answer (or ends a refusal or referral) and closes."""
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority's request handlers close its requests")
    if request.state not in (State.answered, State.additional_information_refused, State.referred):
        raise wrong_state(request, "close")
    return await _close(uow, request, caller, "closed", comment)


async def _close(uow: UnitOfWork, request: Request, caller: Caller | None, action: str, comment: str | None) -> Request:
    request.closed_at = uow.clock.now()
    return await _move(uow, request, State.closed, events.REQUEST_CLOSED, action, caller, comment=comment)


async def request_information(uow: UnitOfWork, caller: Caller, request: Request, comment: str) -> Request:
    """Rule E4: the requester asks for more, back to the responder, as often as needed."""
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority asks for more information")
    if request.state != State.answered:
        raise wrong_state(request, "ask more information on")
    return await _move(
        uow,
        request,
        State.additional_information_requested,
        events.ADDITIONAL_INFORMATION_REQUESTED,
        "additional_information_requested",
        caller,
        comment=comment,
        comment_kind="information_request",
    )


async def refuse_information(uow: UnitOfWork, caller: Caller, request: Request, comment: str) -> Request:
    """Rule E4: the responder states it cannot give more."""
    if request.state != State.additional_information_requested:
        raise wrong_state(request, "refuse more information on")
    responder = await _responder(uow, request)
    if not is_responding_handler(caller, request, responder):
        raise refused("only the responding handler states that no more can be given")
    return await _move(
        uow,
        request,
        State.additional_information_refused,
        events.ADDITIONAL_INFORMATION_REFUSED,
        "additional_information_refused",
        caller,
        comment=comment,
        comment_kind="information_refusal",
    )


async def refer(uow: UnitOfWork, caller: Caller, request: Request, comment: str | None) -> Request:
    """Rule E4: the requester asks its own and the other side's coordinators to step in; those that
    take part in referrals (rule S14) are the referred authorities."""
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority asks for referral")
    if request.state != State.additional_information_refused:
        raise wrong_state(request, "refer")
    coordinators: list[uuid.UUID] = []
    for authority_id in (request.requesting_authority_id, request.responding_authority_id):
        known = await uow.session.get(KnownAuthority, authority_id)
        for coordinator_id in request_coordinator_ids(known, request.area) if known else []:
            coordinator = await uow.session.get(KnownAuthority, coordinator_id)
            if coordinator and coordinator_setting(coordinator, request.area)["referral"] != "no":
                coordinators.append(coordinator_id)
    if not coordinators:
        raise ApiError(409, "no_referral_coordinators", "no coordinator of either side takes part in referrals")
    request.referral_coordinator_ids = [str(c) for c in dict.fromkeys(coordinators)]
    return await _move(uow, request, State.referred, events.REQUEST_REFERRED, "referred", caller, comment=comment)


async def give_opinion(uow: UnitOfWork, caller: Caller, request: Request, opinion: str) -> Request:
    """Rule E4 with S14: a referred coordinator, or its referral user when it delegated, gives its
    opinion; when every referred coordinator has, the request is closed."""
    if request.state != State.referred:
        raise wrong_state(request, "give an opinion on")
    coordinator_id = caller.authority_id
    if str(coordinator_id) not in request.referral_coordinator_ids:
        raise refused("only the referred coordinators give an opinion")
    coordinator = await authority(uow, coordinator_id)
    delegated = coordinator_setting(coordinator, request.area)["referral"] == "delegated"
    allowed = (
        caller.has("referral_user", request.area)
        if delegated
        else acts_for_coordinator(caller, coordinator_id, request.area) or caller.has("referral_user", request.area)
    )
    if not allowed:
        raise refused("this coordinator's referral users answer referrals" if delegated else "not a coordinator user")
    if await uow.session.get(ReferralOpinion, (request.id, coordinator_id)) is not None:
        raise ApiError(409, "opinion_given", "this coordinator has given its opinion")
    message = await _message(uow, request, caller, "referral_opinion", opinion)
    uow.session.add(
        ReferralOpinion(
            request_id=request.id,
            coordinator_id=coordinator_id,
            message_id=message.id if message else None,
            given_by=caller.user_id,
            at=uow.clock.now(),
        )
    )
    await uow.session.flush()
    await _record(
        uow, request, events.REFERRAL_OPINION_GIVEN, "referral_opinion_given", caller, State.referred, message=message
    )
    given = set(
        (
            await uow.session.scalars(
                select(ReferralOpinion.coordinator_id).where(ReferralOpinion.request_id == request.id)
            )
        ).all()
    )
    if {uuid.UUID(c) for c in request.referral_coordinator_ids} <= given:
        await _close(uow, request, caller, "closed_after_referral", None)
    return request


async def reopen(
    uow: UnitOfWork, caller: Caller, request: Request, comment: str, period: Period | None = None
) -> Request:
    """A closed request can be reopened to ask for more until its retention deadline (rule P2: its
    personal data are deleted at the latest ``retention_period`` after closure), and never once
    purged. ``period`` defaults to the shared setting."""
    if not is_requesting_handler(caller, request):
        raise refused("only the requesting authority reopens its requests")
    # Locked: a purge order handled at the same time waits for this decision, or this for its.
    await uow.session.refresh(request, attribute_names=["state", "closed_at", "purged_at"], with_for_update=True)
    if request.state != State.closed or request.purged_at is not None or request.answered_at is None:
        raise wrong_state(request, "reopen")
    deadline = retention_deadline(request, period if period is not None else RetentionPeriods.of(uow.settings).closure)
    if deadline is not None and deadline <= uow.clock.now():
        raise ApiError(
            409,
            "retention_deadline_passed",
            f"the request's personal data were due for deletion on {deadline.isoformat()} (rule P2); "
            "start a new request",
            field="state",
        )
    request.closed_at = None
    return await _move(
        uow,
        request,
        State.additional_information_requested,
        events.REQUEST_REOPENED,
        "reopened",
        caller,
        comment=comment,
        comment_kind="information_request",
    )


async def comment(uow: UnitOfWork, caller: Caller, request: Request, text: str, is_party: bool) -> Message:
    if not is_party or request.state in (State.closed, State.withdrawn):
        raise refused("only the two authorities comment on an open request")
    if not handles_for_a_party(caller, request):
        raise refused("only request handlers comment on a request")
    message = await _message(uow, request, caller, "comment", text)
    assert message is not None
    return message


# Sent on and not answered yet: a reply waiting for its coordinator's approval (rule E3) has not
# reached the requester either.
UNANSWERED = (
    State.awaiting_acceptance,
    State.in_progress,
    State.awaiting_reply_approval,
    State.additional_information_requested,
)


async def mark_overdue(uow: UnitOfWork, today: date) -> int:
    """Requests past their reply date without an answer: one event each, for reminders."""
    due = (
        await uow.session.scalars(
            select(Request)
            .where(
                Request.state.in_(UNANSWERED),
                Request.reply_date < today,
                Request.overdue_notified_at.is_(None),
            )
            .with_for_update(skip_locked=True)  # replicas never announce the same request twice
        )
    ).all()
    for request in due:
        request.overdue_notified_at = uow.clock.now()
        request.version += 1
        await uow.emit(events.REQUEST_OVERDUE, change_of(request, State(request.state), None, uow.clock.now()))
    return len(due)


async def log_personal_data_read(uow: UnitOfWork, caller: Caller, request: Request) -> None:
    """Rule P3: each read of personal data is logged (who, which request, when)."""
    await uow.session.execute(
        insert(PERSONAL_DATA_READS).values(
            request_id=request.id, user_id=caller.user_id, authority_id=caller.authority_id, at=uow.clock.now()
        )
    )
