"""Action lists, overviews and statistics (rules E5, S4, S9): lists of requests for a user or an
authority, and figures without personal data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import String, and_, cast, func, or_, select

from services.exchange.lifecycle import Caller
from services.exchange.models import KnownAuthority, ReferralOpinion, Request, State
from services.exchange.read_model import request_coordinator_ids
from services.exchange.views import Access, Overview, overview
from shared.errors import ApiError
from shared.outbox import UnitOfWork


class ActionItem(BaseModel):
    action: str
    role: str
    deadline: date | None
    request: Overview


async def action_list(uow: UnitOfWork, caller: Caller) -> list[ActionItem]:
    """What awaits the caller, by role, soonest deadline first."""
    mine = caller.authority_id
    me = caller.user_id
    candidates = (
        await uow.session.scalars(
            select(Request).where(
                or_(
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
                        Request.state.in_(
                            [State.awaiting_acceptance, State.in_progress, State.additional_information_requested]
                        ),
                    ),
                    and_(
                        Request.approving_coordinator_id == mine,
                        Request.state.in_([State.awaiting_request_approval, State.awaiting_reply_approval]),
                    ),
                    and_(
                        Request.state == State.referred,
                        cast(Request.referral_coordinator_ids, String).contains(str(mine)),
                    ),
                )
            )
        )
    ).all()
    responders = {
        a.id: a
        for a in (
            await uow.session.scalars(
                select(KnownAuthority).where(KnownAuthority.id.in_({r.responding_authority_id for r in candidates}))
            )
        ).all()
    }
    opinions = set(
        (
            await uow.session.scalars(select(ReferralOpinion.request_id).where(ReferralOpinion.coordinator_id == mine))
        ).all()
    )
    today = uow.clock.now().date()
    items: list[ActionItem] = []
    for request in candidates:
        area = request.area
        found: tuple[str, str] | None = None
        if request.requesting_authority_id == mine and caller.has("request_handler", area):
            if request.state == State.draft:
                found = ("send_draft", "request_handler")
            elif request.state == State.answered:
                found = ("review_answer", "request_handler")
            elif request.state == State.additional_information_refused:
                found = ("close_or_refer", "request_handler")
            elif request.proposed_reply_date is not None:
                found = ("answer_proposed_reply_date", "request_handler")
        elif request.responding_authority_id == mine and request.state != State.referred:
            allocation = responders.get(request.responding_authority_id)
            allocating = bool(allocation and allocation.allocation_enabled)
            if allocating and caller.has("allocator", area) and request.allocated_user_id is None:
                found = ("allocate", "allocator")
            elif request.state == State.awaiting_acceptance and (
                (not allocating and caller.has("request_handler", area)) or request.allocated_user_id == me
            ):
                found = ("accept_or_forward", "request_handler")
            elif request.state != State.awaiting_acceptance and (
                (not allocating and caller.has("request_handler", area)) or request.allocated_user_id == me
            ):
                found = ("answer", "request_handler")
        elif request.approving_coordinator_id == mine and (
            caller.has("request_handler", area) or caller.has("data_administrator", area)
        ):
            found = (
                "approve_request" if request.state == State.awaiting_request_approval else "approve_reply",
                "coordinator",
            )
        elif (
            request.state == State.referred
            and request.id not in opinions
            and (caller.has("referral_user", area) or caller.has("request_handler", area))
        ):
            found = ("give_referral_opinion", "referral")
        if found:
            items.append(
                ActionItem(
                    action=found[0],
                    role=found[1],
                    deadline=request.reply_date,
                    request=overview(request, Access.overview, today),
                )
            )
    return sorted(items, key=lambda i: (i.deadline is None, i.deadline or date.max, i.request.reference))


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
    if box == Box.received or access != Access.full:
        conditions.append(Request.state != State.draft)
    if state is not None:
        conditions.append(Request.state == state)
    if area is not None:
        conditions.append(Request.area == area)
    total = int(await uow.session.scalar(select(func.count()).select_from(Request).where(*conditions)) or 0)
    rows = (
        await uow.session.scalars(
            select(Request)
            .where(*conditions)
            .order_by(Request.created_at.desc(), Request.id)
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
    query = select(
        Request.area,
        Request.requesting_authority_id,
        Request.responding_authority_id,
        Request.received_at,
        Request.accepted_at,
        Request.answered_at,
        Request.reply_date,
    ).where(Request.received_at.is_not(None))
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
