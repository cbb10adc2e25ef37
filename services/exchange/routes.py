"""The exchange's HTTP API: requests and their transitions, answers, attachments, overviews,
action lists, statistics and question sets. Every route needs a signed-in user; the lifecycle
module decides who may do what to which request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
from shared.errors import ApiError, ErrorBody
from shared.languages import LANGUAGE_CODES
from shared.logging import get_logger
from shared.outbox import UnitOfWork
from shared.service import Runtime
from shared.settings import Settings
from shared.translation import HttpMachineTranslator, MachineTranslator

log = get_logger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid access token"},
    403: {"model": ErrorBody, "description": "The caller may not do this to this request"},
    404: {"model": ErrorBody, "description": "No such request, or not one the caller may see"},
    409: {"model": ErrorBody, "description": "Not allowed from the request's current state"},
    422: {"model": ErrorBody, "description": "Invalid input: the error names the field"},
}

router = APIRouter(tags=["requests"], responses=ERRORS)

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
                    "reply_date": "2026-04-30",
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
    responding_authority_id: uuid.UUID | None = None
    question_ids: list[Annotated[str, StringConstraints(max_length=200)]] | None = Field(default=None, max_length=200)
    subject: (
        dict[Annotated[str, StringConstraints(max_length=200)], Annotated[str, StringConstraints(max_length=1000)]]
        | None
    ) = Field(default=None, max_length=50)
    reply_date: date | None = None


class CommentIn(Strict):
    comment: Comment | None = None


class ReasonIn(Strict):
    comment: Comment


class ForwardIn(Strict):
    authority_id: uuid.UUID
    comment: Comment | None = None


class ForwardQuestionsIn(Strict):
    authority_id: uuid.UUID
    question_ids: list[Annotated[str, StringConstraints(max_length=200)]] = Field(min_length=1, max_length=200)
    comment: Comment | None = None


class ReplyDateIn(Strict):
    reply_date: date
    comment: Comment | None = None


class ReplyDateAnswer(Strict):
    agree: bool


class AllocateIn(Strict):
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


@router.get("/question-sets", summary="The question sets, in your language")
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


@router.post("/requests", status_code=201, response_model=Created, summary="Write a request (a draft)")
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


@router.get("/requests/{request_id}", response_model=RequestView, summary="A request, as you may see it")
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
        async with free_text_translator(runtime.settings) as translator:
            if translator is not None:
                await translate_free_text_of(view, language, translator)
    return view


@asynccontextmanager
async def free_text_translator(settings: Settings) -> AsyncIterator[MachineTranslator | None]:
    """The configured machine-translation service (none when ``IMI_MACHINE_TRANSLATION_URL`` is
    unset), its connections closed after the call."""
    if settings.machine_translation_url is None:
        yield None
        return
    async with httpx.AsyncClient(timeout=30) as client:
        yield HttpMachineTranslator(
            settings.machine_translation_url, api_key=settings.machine_translation_api_key, client=client
        )


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


@router.patch("/requests/{request_id}", response_model=Created, summary="Edit a draft")
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


@router.delete("/requests/{request_id}", status_code=204, summary="Delete a draft")
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


@router.post("/requests/{request_id}/send", response_model=RequestView)
async def send(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    """To the responding authority, or first to the coordinator that approves requests (E3)."""
    return await _transition(runtime, principal, request_id, life.send)


@router.post("/requests/{request_id}/approve", response_model=RequestView)
async def approve(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.approve_request)


@router.post("/requests/{request_id}/reject", response_model=RequestView)
async def reject(request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.reject_request, body.comment)


@router.post("/requests/{request_id}/withdraw", response_model=RequestView)
async def withdraw(
    request_id: uuid.UUID, body: CommentIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.withdraw, body.comment)


@router.post("/requests/{request_id}/accept", response_model=RequestView)
async def accept(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.accept)


@router.post("/requests/{request_id}/allocate", response_model=RequestView)
async def allocate(
    request_id: uuid.UUID, body: AllocateIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    """Rule E2: allocate or re-allocate to a request handler."""
    return await _transition(runtime, principal, request_id, life.allocate, body.user_id)


@router.post("/requests/{request_id}/forward", response_model=RequestView)
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


@router.post("/requests/{request_id}/forward-questions", response_model=Created, status_code=201)
async def forward_questions(
    request_id: uuid.UUID, body: ForwardQuestionsIn, runtime: Runtime, principal: CurrentPrincipal
) -> Created:
    caller = Caller(principal)
    async with runtime.messaging.transaction() as uow:
        request, _ = await _visible(uow, caller, request_id, Access.full)
        child = await life.forward_questions(uow, caller, request, body.authority_id, body.question_ids, body.comment)
        return Created(id=child.id, reference=child.reference)


@router.post("/requests/{request_id}/reply-date/proposal", response_model=RequestView)
async def propose_reply_date(
    request_id: uuid.UUID, body: ReplyDateIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.propose_reply_date, body.reply_date, body.comment)


@router.post("/requests/{request_id}/reply-date/answer", response_model=RequestView)
async def answer_reply_date(
    request_id: uuid.UUID, body: ReplyDateAnswer, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.answer_reply_date, body.agree)


@router.put("/requests/{request_id}/answers", response_model=RequestView)
async def save_answers(
    request_id: uuid.UUID, body: AnswersIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    """Answers per question, in the responder's language; each checked against its question's type."""
    return await _transition(runtime, principal, request_id, life.save_answers, body.answers)


@router.post("/requests/{request_id}/reply", response_model=RequestView)
async def reply(request_id: uuid.UUID, body: CommentIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.submit_reply, body.comment)


@router.post("/requests/{request_id}/reply/approve", response_model=RequestView)
async def approve_reply(request_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.approve_reply)


@router.post("/requests/{request_id}/reply/reject", response_model=RequestView)
async def reject_reply(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.reject_reply, body.comment)


@router.post("/requests/{request_id}/close", response_model=RequestView)
async def close(request_id: uuid.UUID, body: CommentIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.close, body.comment)


@router.post("/requests/{request_id}/additional-information", response_model=RequestView)
async def request_information(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    """Rule E4: ask the responder for more."""
    return await _transition(runtime, principal, request_id, life.request_information, body.comment)


@router.post("/requests/{request_id}/additional-information/refusal", response_model=RequestView)
async def refuse_information(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    """Rule E4: the responder states it cannot give more."""
    return await _transition(runtime, principal, request_id, life.refuse_information, body.comment)


@router.post("/requests/{request_id}/referral", response_model=RequestView)
async def refer(request_id: uuid.UUID, body: CommentIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    """Rule E4: ask both sides' coordinators to step in."""
    return await _transition(runtime, principal, request_id, life.refer, body.comment)


@router.post("/requests/{request_id}/referral/opinion", response_model=RequestView)
async def give_opinion(
    request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal
) -> RequestView:
    return await _transition(runtime, principal, request_id, life.give_opinion, body.comment)


@router.post("/requests/{request_id}/reopen", response_model=RequestView)
async def reopen(request_id: uuid.UUID, body: ReasonIn, runtime: Runtime, principal: CurrentPrincipal) -> RequestView:
    return await _transition(runtime, principal, request_id, life.reopen, body.comment)


@router.post("/requests/{request_id}/comments", status_code=201, response_model=RequestView)
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
    responses={
        413: {"model": ErrorBody, "description": "Larger than IMI_ATTACHMENT_MAX_BYTES"},
        415: {"model": ErrorBody, "description": "A type not in IMI_ATTACHMENT_TYPES"},
    },
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


@router.get("/requests/{request_id}/attachments/{attachment_id}", response_class=Response)
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


@router.get("/requests", response_model=OverviewPageOut, summary="Sent or received requests of an authority")
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


@router.get("/actions", response_model=ActionPageOut, summary="What awaits your action")
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


@router.get("/statistics", response_model=list[queries.Figures], tags=["statistics"])
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
