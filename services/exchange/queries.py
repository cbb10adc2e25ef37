"""Action lists, overviews and statistics (rules E5, S4, S9): lists of requests for a user or an
authority, and figures without personal data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, String, and_, case, cast, func, not_, or_, select, true

from services.exchange.lifecycle import Caller
from services.exchange.models import KnownAuthority, ReferralOpinion, Request, State, Transition
from services.exchange.read_model import request_coordinator_ids
from services.exchange.views import OVERVIEW_COLUMNS, Access, Overview, overview
from shared.errors import ApiError
from shared.outbox import UnitOfWork


class ActionItem(BaseModel):
    action: str
    role: str
    deadline: date | None
    request: Overview


@dataclass(frozen=True)
class ActionPage:
    items: list[ActionItem]
    total: int
    page: int
    page_size: int


# Who acts on each action: the role named in the action list.
ACTION_ROLES = {
    "send_draft": "request_handler",
    "review_answer": "request_handler",
    "close_or_refer": "request_handler",
    "answer_proposed_reply_date": "request_handler",
    "allocate": "allocator",
    "accept_or_forward": "request_handler",
    "answer": "request_handler",
    "approve_request": "coordinator",
    "approve_reply": "coordinator",
    "give_referral_opinion": "referral",
}


def _holds(caller: Caller, role: str) -> ColumnElement[bool]:
    """SQL for ``caller.has(role, Request.area)``: an authority-wide role holds in every area."""
    principal = caller.principal
    if role in principal.authority_roles:
        return true()
    return Request.area.in_([area for area, roles in principal.roles.items() if role in roles])


async def action_list(uow: UnitOfWork, caller: Caller, *, page: int = 1, page_size: int = 20) -> ActionPage:
    """What awaits the caller, by role, soonest deadline first (rule E5), a page at a time.

    The database decides which action each request awaits (the ``CASE`` below is one rule per
    role, first match wins), sorts and pages, and returns only the overview's columns: a large
    authority has thousands of open requests, and loading them all to show twenty is what made
    its list take a second."""
    mine = caller.authority_id
    me = caller.user_id
    own = (
        await uow.session.execute(
            select(KnownAuthority.allocation_enabled, KnownAuthority.kind).where(KnownAuthority.id == mine)
        )
    ).first()
    allocating = bool(own and own.allocation_enabled)
    # Rules S5, E3, E4: approving and referred coordinators are request coordinators, which the
    # registry accepts only of a coordinator's kind. A competent authority (nearly every caller)
    # skips those two branches, the ones that read every request awaiting approval or referred.
    coordinating = own is None or own.kind != "competent_authority"
    handles = _holds(caller, "request_handler")
    # Rule E2: with allocation on, the allocated handler answers; otherwise any request handler.
    allocated_to_me = Request.allocated_user_id == me
    answers_here = allocated_to_me if allocating else or_(handles, allocated_to_me)
    responding_side = [
        (and_(Request.state == State.awaiting_acceptance, answers_here), "accept_or_forward"),
        (and_(Request.state != State.awaiting_acceptance, answers_here), "answer"),
    ]
    if allocating:
        allocate = and_(_holds(caller, "allocator"), Request.allocated_user_id.is_(None))
        responding_side.insert(0, (allocate, "allocate"))
    arms: list[tuple[ColumnElement[bool], Any]] = [
        (
            and_(Request.requesting_authority_id == mine, handles),
            case(
                (Request.state == State.draft, "send_draft"),
                (Request.state == State.answered, "review_answer"),
                (Request.state == State.additional_information_refused, "close_or_refer"),
                (Request.proposed_reply_date.is_not(None), "answer_proposed_reply_date"),
            ),
        ),
        (
            and_(Request.responding_authority_id == mine, Request.state != State.referred),
            case(*responding_side),
        ),
    ]
    concerned = [
        and_(
            Request.requesting_authority_id == mine,
            Request.state.in_(
                [
                    State.draft,
                    State.answered,
                    State.additional_information_refused,
                    State.in_progress,
                    State.awaiting_acceptance,
                ]
            ),
        ),
        and_(
            Request.responding_authority_id == mine,
            Request.state.in_([State.awaiting_acceptance, State.in_progress, State.additional_information_requested]),
        ),
    ]
    if coordinating:
        arms += _coordinator_arms(caller, handles)
        concerned += [
            and_(
                Request.approving_coordinator_id == mine,
                Request.state.in_([State.awaiting_request_approval, State.awaiting_reply_approval]),
            ),
            and_(
                Request.state == State.referred,
                cast(Request.referral_coordinator_ids, String).contains(str(mine)),
            ),
        ]
    candidates = select(*OVERVIEW_COLUMNS, case(*arms).label("action")).where(or_(*concerned)).subquery()
    awaiting = candidates.c.action.is_not(None)
    rows = (
        await uow.session.execute(
            select(candidates, func.count().over().label("total"))
            .where(awaiting)
            .order_by(
                candidates.c.reply_date.is_(None),
                candidates.c.reply_date,
                candidates.c.reference,
                candidates.c.id,
            )
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
    ).all()
    if rows:
        total = int(rows[0].total)
    else:
        total = int(await uow.session.scalar(select(func.count()).select_from(candidates).where(awaiting)) or 0)
    today = uow.clock.now().date()
    items = [
        ActionItem(
            action=row.action,
            role=ACTION_ROLES[row.action],
            deadline=row.reply_date,
            request=overview(row, Access.overview, today),
        )
        for row in rows
    ]
    return ActionPage(items, total, page, page_size)


def _coordinator_arms(caller: Caller, handles: ColumnElement[bool]) -> list[tuple[ColumnElement[bool], Any]]:
    """The action list's rules for a coordinator: approvals (E3), then referral opinions (E4, S14)."""
    mine = caller.authority_id
    opinion_given = (
        select(ReferralOpinion.request_id)
        .where(ReferralOpinion.request_id == Request.id, ReferralOpinion.coordinator_id == mine)
        .exists()
    )
    return [
        (
            and_(
                Request.approving_coordinator_id == mine,
                or_(handles, _holds(caller, "data_administrator")),
            ),
            case((Request.state == State.awaiting_request_approval, "approve_request"), else_="approve_reply"),
        ),
        (
            and_(
                Request.state == State.referred,
                not_(opinion_given),
                or_(_holds(caller, "referral_user"), handles),
            ),
            "give_referral_opinion",
        ),
    ]


class Box(StrEnum):
    sent = "sent"
    received = "received"


@dataclass(frozen=True)
class OverviewPage:
    items: list[Overview]
    total: int
    page: int
    page_size: int


async def may_see_overview(uow: UnitOfWork, caller: Caller, authority_id: uuid.UUID) -> Access:
    """Rule S9 (basic users see their authority's and linked authorities' requests), S4, S5."""
    if caller.authority_id == authority_id:
        return Access.full
    known = await uow.session.get(KnownAuthority, authority_id)
    if known is None:
        raise ApiError(404, "not_found", "no such authority", field="authority_id")
    if str(caller.authority_id) in known.links:
        return Access.overview
    if any(caller.authority_id in request_coordinator_ids(known, area) for area in known.areas):
        return Access.overview
    raise ApiError(
        403, "forbidden", "this authority's requests are shown to it, its linked authorities and coordinators"
    )


async def authority_overview(
    uow: UnitOfWork,
    caller: Caller,
    *,
    authority_id: uuid.UUID,
    box: Box,
    state: State | None,
    area: str | None,
    page: int,
    page_size: int,
) -> OverviewPage:
    access = await may_see_overview(uow, caller, authority_id)
    column = Request.requesting_authority_id if box == Box.sent else Request.responding_authority_id
    conditions = [column == authority_id]
    if box == Box.received:
        # Neither drafts nor requests awaiting the requesting side's approval have reached it (E3).
        conditions.append(Request.state.not_in([State.draft, State.awaiting_request_approval]))
    elif access != Access.full:
        conditions.append(Request.state != State.draft)
    if state is not None:
        conditions.append(Request.state == state)
    if area is not None:
        conditions.append(Request.area == area)
    total = int(await uow.session.scalar(select(func.count()).select_from(Request).where(*conditions)) or 0)
    # Newest first; the indexes on (authority, created_at, id) serve this order read backwards.
    rows = (
        await uow.session.execute(
            select(*OVERVIEW_COLUMNS)
            .where(*conditions)
            .order_by(Request.created_at.desc(), Request.id.desc())
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
    ).all()
    today = uow.clock.now().date()
    return OverviewPage([overview(r, access, today) for r in rows], total, page, page_size)


class GroupBy(StrEnum):
    authority = "authority"
    country = "country"
    country_pair = "country_pair"
    area = "area"


class Figures(BaseModel):
    """As the Single Market Scoreboard measures authorities: nothing personal, only counts and times."""

    group: str
    received: int
    accepted_within_7_days: float | None
    average_days_to_answer: float | None
    answered_by_agreed_date: float | None


async def statistics(uow: UnitOfWork, group_by: GroupBy, area: str | None) -> list[Figures]:
    """Days to answer and punctuality count the first answer: a later answer to a request for
    additional information (rule E4) does not make the first one late. It is read from the
    transitions, which a purge keeps."""
    first_answer = (
        select(Transition.request_id, func.min(Transition.at).label("answered_at"))
        .where(Transition.to_state == State.answered)
        .group_by(Transition.request_id)
        .subquery()
    )
    query = (
        select(
            Request.area,
            Request.requesting_authority_id,
            Request.responding_authority_id,
            Request.received_at,
            Request.accepted_at,
            first_answer.c.answered_at,
            Request.reply_date,
        )
        .outerjoin(first_answer, first_answer.c.request_id == Request.id)
        .where(Request.received_at.is_not(None))
    )
    if area is not None:
        query = query.where(Request.area == area)
    rows = (await uow.session.execute(query)).all()
    countries = dict((await uow.session.execute(select(KnownAuthority.id, KnownAuthority.country))).all())
    groups: dict[str, list[Any]] = {}
    for row in rows:
        if group_by == GroupBy.authority:
            key = str(row.responding_authority_id)
        elif group_by == GroupBy.country:
            key = countries.get(row.responding_authority_id, "??")
        elif group_by == GroupBy.country_pair:
            requesting = countries.get(row.requesting_authority_id, "??")
            key = f"{requesting}->{countries.get(row.responding_authority_id, '??')}"
        else:
            key = row.area
        groups.setdefault(key, []).append(row)
    figures = []
    for key, members in sorted(groups.items()):
        accepted = [m for m in members if m.accepted_at is not None]
        answered = [m for m in members if m.answered_at is not None]
        within_week = [m for m in accepted if _aware(m.accepted_at) - _aware(m.received_at) <= timedelta(days=7)]
        days = [(_aware(m.answered_at) - _aware(m.received_at)).total_seconds() / 86400 for m in answered]
        on_time = [m for m in answered if m.reply_date and _aware(m.answered_at).date() <= m.reply_date]
        figures.append(
            Figures(
                group=key,
                received=len(members),
                accepted_within_7_days=round(len(within_week) / len(members), 4) if members else None,
                average_days_to_answer=round(sum(days) / len(days), 2) if days else None,
                answered_by_agreed_date=round(len(on_time) / len(answered), 4) if answered else None,
            )
        )
    return figures


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
