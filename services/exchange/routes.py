"""The exchange's HTTP API: requests and their transitions, answers, attachments, overviews,
action lists, statistics and question sets. Every route needs a signed-in user; the lifecycle
module decides who may do what to which request."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.exchange import lifecycle as life
from services.exchange import queries
from services.exchange.attachments import attach
from services.exchange.lifecycle import Caller
from services.exchange.models import Attachment, AttachmentContent, Request, State
from services.exchange.question_sets import QuestionType, question_set, question_sets
from services.exchange.views import Access, Overview, RequestView, access_of, detailed, overview_fields
from shared.auth import CurrentPrincipal
from shared.errors import MALFORMED, REQUEST_TOO_LARGE, SIGNED_IN, ApiError, Refusal, Refusals, error_responses
from shared.languages import LANGUAGE_CODES
from shared.logging import get_logger
from shared.outbox import UnitOfWork
from shared.service import Runtime
from shared.translation import MachineTranslator, configured_translator

log = get_logger(__name__)

router = APIRouter(tags=["requests"])


# -- the refusals each route documents (raised here and in services.exchange.lifecycle) ----------


def refusals(*specific: Refusals) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: the token refusals, the route's own and invalid input (which
    replaces the app's own 422 entry, so it is listed again here)."""
    return error_responses(SIGNED_IN, specific, MALFORMED)


def wrong_state(action: str, state: str = "closed") -> Refusal:
    return Refusal(409, "transition_not_allowed", f"cannot {action} a request that is {state}", field="state")


def forbidden(message: str) -> Refusal:
    return Refusal(403, "forbidden", message)


NOT_FOUND = Refusal(404, "not_found", "no such request", field="request_id")
UNKNOWN_LANGUAGE = Refusal(422, "unknown_language", "'xx' is not one of the 26 languages", field="lang")
TEXT_TOO_LONG = Refusal(422, "text_too_long", f"free text is limited to {life.MAX_FREE_TEXT} characters", "comment")
UNKNOWN_AUTHORITY = Refusal(422, "unknown_authority", "no such authority in the directory", "responding_authority_id")
RESPONDING_AUTHORITY = (
    UNKNOWN_AUTHORITY,
    Refusal(422, "responding_authority_is_requester", "a request goes to another authority", "responding_authority_id"),
    Refusal(422, "responding_authority_inactive", "the responding authority is not active", "responding_authority_id"),
    Refusal(
        422,
        "responding_authority_lacks_area",
        "the responding authority does not work in 'professional_qualifications'",
        "responding_authority_id",
    ),
)
DRAFT_CONTENT = (
    Refusal(
        422,
        "question_not_in_set",
        "'pq.unknown' is not a question of the professional_qualifications set",
        "question_ids",
    ),
    Refusal(422, "unknown_subject_field", "'nickname' is not a subject field", "subject.nickname"),
    Refusal(422, "text_too_long", "subject values are limited to 1000 characters", "subject.family_name"),
    Refusal(422, "wrong_answer_type", "a date is written YYYY-MM-DD", "subject.date_of_birth"),
    RESPONDING_AUTHORITY,
)
DRAFT_PURGED = Refusal(409, "draft_purged", "this draft's data were deleted after its retention period; start anew")
FORWARD_TARGET = (
    Refusal(422, "unknown_authority", "no such authority in the directory", "authority_id"),
    Refusal(422, "forward_across_countries", "forward to an authority of the same country", "authority_id"),
)

Comment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=life.MAX_FREE_TEXT)]
Lang = Annotated[str | None, Query(min_length=2, max_length=2, description="defaults to your preferred language")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DraftIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "area": "professional_qualifications",
                    "responding_authority_id": "4b1e2f7a-61d3-4f0e-9a7c-2b8f3c1d5e60",
                    "question_ids": ["pq.identity.document_matches", "pq.diploma.authentic", "pq.sanctions.any"],
                    "subject": {
                        "family_name": "Byrne",
                        "given_names": "Aoife",
                        "date_of_birth": "1984-02-29",
                        "profession": "doctor of medicine",
                    },
                    "reply_date": "2027-03-31",
                    "comment": "The professional applied for registration in Ireland.",
                }
            ]
        },
    )

    area: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    responding_authority_id: uuid.UUID | None = None
    question_ids: list[Annotated[str, StringConstraints(max_length=200)]] = Field(default_factory=list, max_length=200)
    subject: dict[
        Annotated[str, StringConstraints(max_length=200)], Annotated[str, StringConstraints(max_length=1000)]
    ] = Field(default_factory=dict, max_length=50, description="the professional's or provider's data (personal data)")
    reply_date: date | None = None
    comment: Comment | None = None


class DraftPatch(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "responding_authority_id": "4b1e2f7a-61d3-4f0e-9a7c-2b8f3c1d5e60",
                    "question_ids": ["pq.identity.document_matches", "pq.diploma.authentic"],
                    "subject": {"family_name": "Byrne", "given_names": "Aoife"},
                    "reply_date": "2027-04-15",
                }
            ]
        }
    )

    responding_authority_id: uuid.UUID | None = None
    question_ids: list[Annotated[str, StringConstraints(max_length=200)]] | None = Field(default=None, max_length=200)
    subject: (
        dict[Annotated[str, StringConstraints(max_length=200)], Annotated[str, StringConstraints(max_length=1000)]]
        | None
    ) = Field(default=None, max_length=50)
    reply_date: date | None = None


class CommentIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"comment": "Thank you, the information answers our questions."}]}
    )

    comment: Comment | None = None


class ReasonIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"comment": "Please also confirm the date the diploma was awarded."}]}
    )

    comment: Comment


class ForwardIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "authority_id": "9c3d5e7f-1a2b-4c6d-8e0f-a1b2c3d4e5f6",
                    "comment": "The diploma was issued in Iași; the college there holds the file.",
                }
            ]
        }
    )

    authority_id: uuid.UUID
    comment: Comment | None = None


class ForwardQuestionsIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "authority_id": "9c3d5e7f-1a2b-4c6d-8e0f-a1b2c3d4e5f6",
                    "question_ids": ["pq.sanctions.any"],
                    "comment": "Disciplinary records are kept by the national college.",
                }
            ]
        }
    )

    authority_id: uuid.UUID
    question_ids: list[Annotated[str, StringConstraints(max_length=200)]] = Field(min_length=1, max_length=200)
    comment: Comment | None = None


class ReplyDateIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"reply_date": "2027-05-14", "comment": "The archive holding the diploma file reopens in May."}
            ]
        }
    )

    reply_date: date
    comment: Comment | None = None


class ReplyDateAnswer(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"agree": True}]})

    agree: bool


class AllocateIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": "2f8e6d4c-0b1a-4938-8776-5a4b3c2d1e0f"}]})

    user_id: uuid.UUID


class AnswersIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "answers": {
                        "pq.identity.document_matches": "yes",
                        "pq.diploma.authentic": "yes",
                        "pq.sanctions.any": "no",
                        "pq.diploma.date_of_award": "2009-07-01",
                    }
                }
            ]
        },
    )

    answers: dict[Annotated[str, StringConstraints(max_length=200)], Any] = Field(min_length=1, max_length=200)


class Created(BaseModel):
    id: uuid.UUID
    reference: str


class AttachmentOut(BaseModel):
    id: uuid.UUID
    filename: str
    content_type: str
    size: int


class OverviewPageOut(BaseModel):
    items: list[Overview]
    total: int
    page: int
    page_size: int


class ActionPageOut(BaseModel):
    items: list[queries.ActionItem]
    total: int
    page: int
    page_size: int


def _language(caller: Caller, lang: str | None) -> str:
    language = lang or caller.language
    if language not in LANGUAGE_CODES:
        raise ApiError(422, "unknown_language", f"{language!r} is not one of the 26 languages", field="lang")
    return language


async def _visible(uow: UnitOfWork, caller: Caller, request_id: uuid.UUID, at_least: Access) -> tuple[Request, Access]:
    request = await life.load_request(uow, request_id)
    access = await access_of(uow, caller, request)
    order = [Access.none, Access.overview, Access.details, Access.full]
    if order.index(access) < order.index(at_least):
        if access == Access.none:
            raise ApiError(404, "not_found", "no such request", field="request_id")
        raise ApiError(403, "forbidden", "your access to this request does not include this")
    return request, access


async def _view(uow: UnitOfWork, caller: Caller, request: Request, language: str) -> RequestView:
    access = await access_of(uow, caller, request)
    if access == Access.full:
        await life.log_personal_data_read(uow, caller, request)
    return await detailed(uow, request, access, language)


@router.get("/question-sets", summary="The question sets, in your language", responses=refusals(UNKNOWN_LANGUAGE))
async def list_question_sets(principal: CurrentPrincipal, lang: Lang = None) -> list[dict[str, Any]]:
    language = _language(Caller(principal), lang)
    return [
        {
            "area": qs.area,
            "version": qs.version,
            "subject_fields": [
                {
                    "id": f.id,
                    "type": f.type,
                    "label": f.label_in(language),
                    "personal_data": f.personal_data,
                    "required": f.required,
                }
                for f in qs.subject_fields
            ],
            "sections": [
                {
                    "id": s.id,
                    "title": s.title_in(language),
                    "questions": [
                        {
                            "id": q.id,
                            "type": q.type,
                            "text": q.text_in(language),
                            "personal_data": q.personal_data,
                            "options": {o.id: o.label_in(language) for o in q.options},
                        }
                        for q in s.questions
                    ],
                }
                for s in qs.sections
            ],
        }
        for qs in question_sets()
        if qs.version == question_set(qs.area).version
    ]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        description="Any string unique to this request of yours (a UUID, say): a retry with the same key "
        "(after a lost response) gets the draft the first call wrote, never a second one",
    ),
]


async def _written_with(uow: UnitOfWork, caller: Caller, key: str) -> Created | None:
    found = (
        await uow.session.execute(
            select(Request.id, Request.reference).where(
                Request.requester_user_id == caller.user_id, Request.idempotency_key == key
            )
        )
    ).first()
    return Created(id=found.id, reference=found.reference) if found else None


@router.post(
    "/requests",
    status_code=201,
    response_model=Created,
    summary="Write a request (a draft)",
    responses=refusals(
        forbidden("only request handlers in 'professional_qualifications' write requests"),
        Refusal(409, "conflict", "the request could not be written; try again"),
        Refusal(422, "unknown_legislative_area", "no question set for 'medicine'", "area"),
        DRAFT_CONTENT,
    ),
)
async def create_request(
    body: DraftIn, runtime: Runtime, principal: CurrentPrincipal, idempotency_key: IdempotencyKey = None
) -> Created:
    """Rule E1: a request handler writes a request in their own language from the area's question set."""
    caller = Caller(principal)
    try:
        async with runtime.messaging.transaction() as uow:
            if idempotency_key is not None and (earlier := await _written_with(uow, caller, idempotency_key)):
                return earlier
            request = await life.create_draft(
                uow,
                caller,
                area=body.area,
                responding_authority_id=body.responding_authority_id,
                question_ids=body.question_ids,
                subject=body.subject,
                reply_date=body.reply_date,
                comment=body.comment,
                idempotency_key=idempotency_key,
            )
            return Created(id=request.id, reference=request.reference)
    except IntegrityError:
        if idempotency_key is None:
            raise
    # Two tries with one key at once: the other one's draft was committed first.
    async with runtime.messaging.transaction() as uow:
        earlier = await _written_with(uow, caller, idempotency_key)
        if earlier is None:
            raise ApiError(409, "conflict", "the request could not be written; try again")
        return earlier


@router.get(
    "/requests/{request_id}",
    response_model=RequestView,
    summary="A request, as you may see it",
    responses=refusals(NOT_FOUND, forbidden("your access to this request does not include this"), UNKNOWN_LANGUAGE),
)
async def get_request(
    request_id: uuid.UUID,
    runtime: Runtime,
    principal: CurrentPrincipal,
    lang: Lang = None,
    translate_free_text: bool = Query(False, description="machine-translate free text into your language"),
) -> RequestView:
    """Question texts in your language; free text as written (machine-translated on demand when a
    translation service is configured). Personal data only for the two authorities involved."""
    caller = Caller(principal)
    language = _language(caller, lang)
    async with runtime.messaging.transaction() as uow:
        request, access = await _visible(uow, caller, request_id, Access.overview)
        if access == Access.overview:
            return RequestView(
                **overview_fields(request, access, uow.clock.now().date()),
                language=language,
                allocated_user_id=None,
                approving_coordinator_id=None,
                referral_coordinator_ids=[],
                questions=[],
                transitions=[],
                personal_data_purged=request.purged_at is not None,
            )
        view = await _view(uow, caller, request, language)
    if translate_free_text:
        async with configured_translator(runtime.settings) as translator:
            if translator is not None:
                await translate_free_text_of(view, language, translator)
    return view


async def translate_free_text_of(view: RequestView, language: str, translator: MachineTranslator) -> None:
    """Rule E1: free text (messages and free-text answers) stays as written; a machine translation
    into the reader's language is added beside it. Only text the reader already sees is sent, one
    call per source language; a failing service leaves the text as written, never a 5xx."""
    pending: dict[str, list[tuple[str, Callable[[str], None]]]] = {}
    for message in view.messages or []:
        if message.language != language:
            pending.setdefault(message.language, []).append((message.text, partial(setattr, message, "translation")))
    for question in view.questions:
        if (
            question.type == QuestionType.FREE_TEXT
            and isinstance(question.answer, str)
            and question.answer_language not in (None, language)
        ):
            pending.setdefault(str(question.answer_language), []).append(
                (question.answer, partial(setattr, question, "answer_translation"))
            )
    for source, items in pending.items():
        try:
            translated = await translator.translate([text for text, _ in items], source, language)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("machine translation unavailable; free text shown as written", error=type(exc).__name__)
            continue
        for (_, keep), translation in zip(items, translated, strict=True):
            keep(translation)


@router.patch(
    "/requests/{request_id}",
    response_model=Created,
    summary="Edit a draft",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority's request handlers edit the draft"),
        wrong_state("edit", "awaiting_acceptance"),
        DRAFT_PURGED,
        DRAFT_CONTENT,
    ),
)
async def edit_request(
    request_id: uuid.UUID, body: DraftPatch, runtime: Runtime, principal: CurrentPrincipal
) -> Created:
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        request, _ = await _visible(uow, caller, request_id, Access.full)  # outsiders learn nothing
        await life.edit_draft(
            uow,
            caller,
            request,
            responding_authority_id=body.responding_authority_id,
            question_ids=body.question_ids,
            subject=body.subject,
            reply_date=body.reply_date,
        )
        return Created(id=request.id, reference=request.reference)


@router.delete(
    "/requests/{request_id}",
    status_code=204,
    summary="Delete a draft",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority's request handlers delete the draft"),
        wrong_state("delete", "awaiting_acceptance"),
    ),
)
async def delete_request(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> Response:
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        request, _ = await _visible(uow, caller, request_id, Access.full)  # outsiders learn nothing
        await life.delete_draft(uow, caller, request)
    return Response(status_code=204)


async def _transition(runtime: Runtime, principal: Any, request_id: uuid.UUID, action: Any, *args: Any) -> RequestView:
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        request = await life.load_request(uow, request_id)
        if (
            await access_of(uow, caller, request) == Access.none
            and request.approving_coordinator_id != caller.authority_id
        ):
            raise ApiError(404, "not_found", "no such request", field="request_id")
        request = await action(uow, caller, request, *args)
        return await _view(uow, caller, request, caller.language)


@router.post(
    "/requests/{request_id}/send",
    response_model=RequestView,
    summary="Send a draft (E1, E3)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority's request handlers send its requests"),
        wrong_state("send", "awaiting_acceptance"),
        DRAFT_PURGED,
        Refusal(422, "responding_authority_missing", "choose the responding authority", "responding_authority_id"),
        Refusal(422, "no_questions", "choose at least one question", "question_ids"),
        Refusal(422, "subject_field_missing", "family_name is required", "subject.family_name"),
        Refusal(
            422,
            "reply_date_not_in_future",
            "the reply date the requester needs must be after today",
            "reply_date",
        ),
        RESPONDING_AUTHORITY,
    ),
)
async def send(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    """To the responding authority, or first to the coordinator that approves requests (E3)."""
    return await _transition(runtime, principal, request_id, life.send)


@router.post(
    "/requests/{request_id}/approve",
    response_model=RequestView,
    summary="Approve a request before it goes out (the approving coordinator, E3)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the approving coordinator approves this request (rule E3)"),
        wrong_state("approve", "in_progress"),
    ),
)
async def approve(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.approve_request)


@router.post(
    "/requests/{request_id}/reject",
    response_model=RequestView,
    summary="Send a request back to its writer (the approving coordinator, E3)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the approving coordinator rejects this request (rule E3)"),
        wrong_state("reject", "in_progress"),
        TEXT_TOO_LONG,
    ),
)
async def reject(request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.reject_request, body.comment)


@router.post(
    "/requests/{request_id}/withdraw",
    response_model=RequestView,
    summary="Withdraw a sent request",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority's request handlers withdraw its requests"),
        wrong_state("withdraw", "in_progress"),
        TEXT_TOO_LONG,
    ),
)
async def withdraw(
    request_id: uuid.UUID, body: CommentIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.withdraw, body.comment)


@router.post(
    "/requests/{request_id}/accept",
    response_model=RequestView,
    summary="Accept a received request",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the responding authority's request handlers or allocators accept"),
        wrong_state("accept", "in_progress"),
        Refusal(409, "reply_date_pending", "the requester has not yet answered the proposed reply date"),
        UNKNOWN_AUTHORITY,
    ),
)
async def accept(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.accept)


@router.post(
    "/requests/{request_id}/allocate",
    response_model=RequestView,
    summary="Allocate a received request to a request handler (E2)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the responding authority's allocators allocate (rule E2)"),
        wrong_state("allocate"),
        Refusal(409, "allocation_off", "the responding authority does not allocate requests (rule S8)"),
        Refusal(409, "already_allocated", "the request is already allocated to this handler"),
        Refusal(422, "not_a_request_handler", "allocate to a request handler of the authority in this area", "user_id"),
        UNKNOWN_AUTHORITY,
    ),
)
async def allocate(
    request_id: uuid.UUID, body: AllocateIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    """Rule E2: allocate or re-allocate to a request handler."""
    return await _transition(runtime, principal, request_id, life.allocate, body.user_id)


@router.post(
    "/requests/{request_id}/forward",
    response_model=RequestView,
    summary="Forward a received request to another authority of the same country",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the responding authority's request handlers or allocators forward"),
        wrong_state("forward", "in_progress"),
        FORWARD_TARGET,
        Refusal(422, "forward_to_party", "forward to another authority", "authority_id"),
        Refusal(422, "responding_authority_lacks_area", "that authority does not work in this area", "authority_id"),
        TEXT_TOO_LONG,
    ),
)
async def forward(request_id: uuid.UUID, body: ForwardIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        request, _ = await _visible(uow, caller, request_id, Access.full)
        await life.forward(uow, caller, request, body.authority_id, body.comment)
        return overview_view(request, uow)


def overview_view(request: Request, uow: UnitOfWork) -> RequestView:
    """After handing a request on, the former responder keeps only what it may still see."""
    return RequestView(
        **overview_fields(request, Access.overview, uow.clock.now().date()),
        language="en",
        allocated_user_id=None,
        approving_coordinator_id=None,
        referral_coordinator_ids=[],
        questions=[],
        transitions=[],
        personal_data_purged=request.purged_at is not None,
    )


@router.post(
    "/requests/{request_id}/forward-questions",
    response_model=Created,
    status_code=201,
    summary="Forward some questions to another authority (a new request)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the responding authority's request handlers forward questions"),
        wrong_state("forward questions of"),
        FORWARD_TARGET,
        Refusal(422, "question_not_in_request", "forward questions of this request only", "question_ids"),
        Refusal(422, "forward_whole_request", "to hand over every question, forward the request", "question_ids"),
        TEXT_TOO_LONG,
    ),
)
async def forward_questions(
    request_id: uuid.UUID, body: ForwardQuestionsIn, runtime: Runtime, principal: CurrentPrincipal
) -> Created:
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        request, _ = await _visible(uow, caller, request_id, Access.full)
        child = await life.forward_questions(uow, caller, request, body.authority_id, body.question_ids, body.comment)
        return Created(id=child.id, reference=child.reference)


@router.post(
    "/requests/{request_id}/reply-date/proposal",
    response_model=RequestView,
    summary="Propose another reply date (the responder)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the responding authority proposes another reply date"),
        wrong_state("propose a reply date for"),
        Refusal(422, "reply_date_not_in_future", "propose a date after today", "reply_date"),
        TEXT_TOO_LONG,
        UNKNOWN_AUTHORITY,
    ),
)
async def propose_reply_date(
    request_id: uuid.UUID, body: ReplyDateIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.propose_reply_date, body.reply_date, body.comment)


@router.post(
    "/requests/{request_id}/reply-date/answer",
    response_model=RequestView,
    summary="Agree or not to a proposed reply date (the requester)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority answers a proposed reply date"),
        wrong_state("answer a reply date of"),
        Refusal(409, "no_reply_date_proposed", "no other reply date was proposed"),
    ),
)
async def answer_reply_date(
    request_id: uuid.UUID, body: ReplyDateAnswer, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.answer_reply_date, body.agree)


@router.put(
    "/requests/{request_id}/answers",
    response_model=RequestView,
    summary="Save answers (the responding handler)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the responding handler answers (the allocated one when allocation is on)"),
        wrong_state("answer"),
        Refusal(422, "question_not_in_request", "'pq.sanctions.any' is not a question of this request", "answers"),
        Refusal(422, "wrong_answer_type", "answer one of yes, no", "answers.pq.diploma.authentic"),
        UNKNOWN_AUTHORITY,
    ),
)
async def save_answers(
    request_id: uuid.UUID, body: AnswersIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    """Answers per question, in the responder's language; each checked against its question's type."""
    return await _transition(runtime, principal, request_id, life.save_answers, body.answers)


@router.post(
    "/requests/{request_id}/reply",
    response_model=RequestView,
    summary="Send the reply (to the requester, or first to the approving coordinator, E3)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the responding handler replies"),
        wrong_state("reply to"),
        Refusal(422, "questions_unanswered", "answer every question first: pq.sanctions.any", "answers"),
        TEXT_TOO_LONG,
        UNKNOWN_AUTHORITY,
    ),
)
async def reply(request_id: uuid.UUID, body: CommentIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.submit_reply, body.comment)


@router.post(
    "/requests/{request_id}/reply/approve",
    response_model=RequestView,
    summary="Approve a reply before it goes out (the approving coordinator, E3)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the approving coordinator approves this reply (rule E3)"),
        wrong_state("approve the reply of", "in_progress"),
    ),
)
async def approve_reply(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.approve_reply)


@router.post(
    "/requests/{request_id}/reply/reject",
    response_model=RequestView,
    summary="Send a reply back to the responder (the approving coordinator, E3)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the approving coordinator rejects this reply (rule E3)"),
        wrong_state("reject the reply of", "in_progress"),
        TEXT_TOO_LONG,
    ),
)
async def reject_reply(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.reject_reply, body.comment)


@router.post(
    "/requests/{request_id}/close",
    response_model=RequestView,
    summary="Close a replied request (the requester)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority's request handlers close its requests"),
        wrong_state("close", "in_progress"),
        TEXT_TOO_LONG,
    ),
)
async def close(request_id: uuid.UUID, body: CommentIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.close, body.comment)


@router.post(
    "/requests/{request_id}/additional-information",
    response_model=RequestView,
    summary="Ask the responder for more (E4)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority asks for more information"),
        wrong_state("ask for more on", "in_progress"),
        TEXT_TOO_LONG,
    ),
)
async def request_information(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    """Rule E4: ask the responder for more."""
    return await _transition(runtime, principal, request_id, life.request_information, body.comment)


@router.post(
    "/requests/{request_id}/additional-information/refusal",
    response_model=RequestView,
    summary="State that no more can be given (E4)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the responding handler states that no more can be given"),
        wrong_state("refuse more information on", "in_progress"),
        TEXT_TOO_LONG,
        UNKNOWN_AUTHORITY,
    ),
)
async def refuse_information(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    """Rule E4: the responder states it cannot give more."""
    return await _transition(runtime, principal, request_id, life.refuse_information, body.comment)


@router.post(
    "/requests/{request_id}/referral",
    response_model=RequestView,
    summary="Ask both sides' coordinators to step in (E4, S14)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority asks for referral"),
        wrong_state("refer", "in_progress"),
        Refusal(409, "no_referral_coordinators", "no coordinator of either side takes part in referrals"),
        TEXT_TOO_LONG,
    ),
)
async def refer(request_id: uuid.UUID, body: CommentIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    """Rule E4: ask both sides' coordinators to step in."""
    return await _transition(runtime, principal, request_id, life.refer, body.comment)


@router.post(
    "/requests/{request_id}/referral/opinion",
    response_model=RequestView,
    summary="Give a coordinator's opinion on a referred request",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the referred coordinators give an opinion"),
        wrong_state("give an opinion on"),
        Refusal(409, "opinion_given", "this coordinator has given its opinion"),
        TEXT_TOO_LONG,
        UNKNOWN_AUTHORITY,
    ),
)
async def give_opinion(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.give_opinion, body.comment)


@router.post(
    "/requests/{request_id}/reopen",
    response_model=RequestView,
    summary="Reopen a closed request (the requester)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only the requesting authority reopens its requests"),
        wrong_state("reopen", "in_progress"),
        Refusal(
            409,
            "retention_deadline_passed",
            "the request's personal data were due for deletion on 2026-11-01 (rule P2); start a new request",
        ),
        TEXT_TOO_LONG,
    ),
)
async def reopen(request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.reopen, body.comment)


@router.post(
    "/requests/{request_id}/comments",
    status_code=201,
    response_model=RequestView,
    summary="Add a comment to a request",
    responses=refusals(
        NOT_FOUND,
        forbidden("only request handlers comment on a request"),
        TEXT_TOO_LONG,
    ),
)
async def add_comment(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        request, access = await _visible(uow, caller, request_id, Access.overview)
        await life.comment(uow, caller, request, body.comment, access == Access.full)
        return await _view(uow, caller, request, caller.language)


@router.post(
    "/requests/{request_id}/attachments",
    status_code=201,
    response_model=AttachmentOut,
    summary="Attach a document (the two authorities' request handlers)",
    responses=refusals(
        NOT_FOUND,
        forbidden("only request handlers attach documents"),
        Refusal(409, "transition_not_allowed", "cannot attach to a request that is closed"),
        Refusal(413, "attachment_too_large", "attachments are limited to 10485760 bytes", "file"),
        REQUEST_TOO_LARGE,
        Refusal(415, "attachment_type_not_allowed", "accepted types: application/pdf, image/png", "file"),
        Refusal(422, "attachment_empty", "the file is empty", "file"),
        Refusal(422, "attachment_name_invalid", "give the file a plain name of up to 255 characters", "file"),
    ),
)
async def upload_attachment(
    request_id: uuid.UUID,
    runtime: Runtime,
    principal: CurrentPrincipal,
    file: Annotated[UploadFile, File(description="PDF, image or office document")],
    name: Annotated[str | None, Form(max_length=255)] = None,
) -> AttachmentOut:
    caller = Caller(principal)
    limit = runtime.settings.attachment_max_bytes
    content = await file.read(limit + 1)
    async with runtime.messaging.transaction() as uow:
        request, access = await _visible(uow, caller, request_id, Access.overview)
        attachment = await attach(
            uow,
            runtime.settings,
            caller,
            request,
            filename=name or file.filename or "",
            declared_type=file.content_type or "",
            content=content,
            is_party=access == Access.full,
        )
        return AttachmentOut(
            id=attachment.id, filename=attachment.filename, content_type=attachment.content_type, size=attachment.size
        )


@router.get(
    "/requests/{request_id}/attachments/{attachment_id}",
    response_class=Response,
    summary="Download an attachment (the two authorities)",
    responses=refusals(
        NOT_FOUND,
        Refusal(404, "not_found", "no such attachment", "attachment_id"),
        forbidden("your access to this request does not include this"),
    ),
)
async def download_attachment(
    request_id: uuid.UUID, attachment_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal
) -> Response:
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        request, _ = await _visible(uow, caller, request_id, Access.full)
        attachment = await uow.session.scalar(
            select(Attachment).where(Attachment.id == attachment_id, Attachment.request_id == request.id)
        )
        content = await uow.session.get(AttachmentContent, attachment_id)
        if attachment is None or content is None:
            raise ApiError(404, "not_found", "no such attachment", field="attachment_id")
        await life.log_personal_data_read(uow, caller, request)
        return Response(
            content=content.content,
            media_type=attachment.content_type,
            headers={"Content-Disposition": f'attachment; filename="{attachment.filename}"'},
        )


@router.get(
    "/requests",
    response_model=OverviewPageOut,
    summary="Sent or received requests of an authority",
    responses=refusals(
        Refusal(404, "not_found", "no such authority", "authority_id"),
        forbidden("this authority's requests are shown to it, its linked authorities and coordinators"),
    ),
)
async def list_requests(
    runtime: Runtime,
    principal: CurrentPrincipal,
    box: queries.Box,
    authority_id: uuid.UUID | None = None,
    state: State | None = None,
    area: Annotated[str | None, Query(max_length=100)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OverviewPageOut:
    """Rule S9: every user sees an overview of the requests sent and received by their authority and
    the authorities linked to it (S4); coordinators of theirs (S5)."""
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        found = await queries.authority_overview(
            uow,
            caller,
            authority_id=authority_id or caller.authority_id,
            box=box,
            state=state,
            area=area,
            page=page,
            page_size=page_size,
        )
        return OverviewPageOut(items=found.items, total=found.total, page=found.page, page_size=found.page_size)


@router.get("/actions", response_model=ActionPageOut, summary="What awaits your action", responses=refusals())
async def my_actions(
    runtime: Runtime,
    principal: CurrentPrincipal,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ActionPageOut:
    """By role, soonest deadline first (rule E5), a page at a time; ``total`` counts them all."""
    async with runtime.messaging.transaction() as uow:
        found = await queries.action_list(uow, Caller(principal), page=page, page_size=page_size)
        return ActionPageOut(items=found.items, total=found.total, page=found.page, page_size=found.page_size)


@router.get(
    "/statistics",
    response_model=list[queries.Figures],
    tags=["statistics"],
    summary="Reply-time statistics per country or area",
    responses=refusals(),
)
async def statistics(
    runtime: Runtime,
    principal: CurrentPrincipal,
    group_by: queries.GroupBy = queries.GroupBy.country,
    area: Annotated[str | None, Query(max_length=100)] = None,
) -> list[queries.Figures]:
    """Share accepted within 7 days, average days to answer, share answered by the agreed date."""
    del principal
    async with runtime.messaging.transaction() as uow:
        return await queries.statistics(uow, group_by, area)
