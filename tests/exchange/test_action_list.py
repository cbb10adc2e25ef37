"""The action list (rule E5, with E2, E3, E4, S8, S14): the database picks each request's action,
sorts and pages. Checked against the rules written out plainly in Python, one request at a time,
over many requests in every state and callers with every mix of roles, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from services.exchange.lifecycle import Caller
from services.exchange.models import KnownAuthority, ReferralOpinion, Request, State
from services.exchange.queries import action_list
from shared.auth import Principal
from tests.exchange.world import PQ, START, ExchangeWorld

ROLES = ["request_handler", "allocator", "referral_user", "data_administrator"]
OTHER_AREA = "services"


def expected_actions(caller: Caller, requests: list[Request], allocating: bool, opinions: set[uuid.UUID]) -> list[Any]:
    """Rule by rule, in the order the roles are asked: what awaits ``caller`` on each request."""
    mine, me = caller.authority_id, caller.user_id
    requesting_states = {
        State.draft,
        State.answered,
        State.additional_information_refused,
        State.in_progress,
        State.awaiting_acceptance,
    }
    responding_states = {State.awaiting_acceptance, State.in_progress, State.additional_information_requested}
    approval_states = {State.awaiting_request_approval, State.awaiting_reply_approval}
    found = []
    for r in requests:
        if not (
            (r.requesting_authority_id == mine and r.state in requesting_states)
            or (r.responding_authority_id == mine and r.state in responding_states)
            or (r.approving_coordinator_id == mine and r.state in approval_states)
            or (r.state == State.referred and str(mine) in r.referral_coordinator_ids)
        ):
            continue
        area, action = r.area, None
        if r.requesting_authority_id == mine and caller.has("request_handler", area):
            if r.state == State.draft:
                action = ("send_draft", "request_handler")
            elif r.state == State.answered:
                action = ("review_answer", "request_handler")
            elif r.state == State.additional_information_refused:
                action = ("close_or_refer", "request_handler")
            elif r.proposed_reply_date is not None:
                action = ("answer_proposed_reply_date", "request_handler")
        elif r.responding_authority_id == mine and r.state != State.referred:
            answers = (not allocating and caller.has("request_handler", area)) or r.allocated_user_id == me
            if allocating and caller.has("allocator", area) and r.allocated_user_id is None:
                action = ("allocate", "allocator")
            elif r.state == State.awaiting_acceptance and answers:
                action = ("accept_or_forward", "request_handler")
            elif r.state != State.awaiting_acceptance and answers:
                action = ("answer", "request_handler")
        elif r.approving_coordinator_id == mine and (
            caller.has("request_handler", area) or caller.has("data_administrator", area)
        ):
            approve = "approve_request" if r.state == State.awaiting_request_approval else "approve_reply"
            action = (approve, "coordinator")
        elif (
            r.state == State.referred
            and r.id not in opinions
            and (caller.has("referral_user", area) or caller.has("request_handler", area))
        ):
            action = ("give_referral_opinion", "referral")
        if action:
            found.append((r.reply_date is None, r.reply_date or date.max, r.reference, str(r.id), *action))
    return [(request_id, action, role) for *_, request_id, action, role in sorted(found)]


async def many_requests(world: ExchangeWorld, rng: random.Random, users: list[uuid.UUID]) -> None:
    """Requests between the world's authorities in every state, with and without allocation,
    approving coordinators, referrals and opinions, proposed dates and deadlines."""
    authorities = list(world.authorities.values())
    # Approving and referred coordinators are coordinators: the registry accepts no other (rule S5).
    coordinators = [world.authorities["ro_coordinator"], world.authorities["ie_coordinator"]]
    opinions: list[tuple[uuid.UUID, uuid.UUID]] = []
    async with world.runtime.messaging.transaction() as uow:
        for number in range(400):
            state = rng.choice(list(State))
            requesting = rng.choice(authorities)
            referred = rng.sample(coordinators, rng.randint(0, 2))
            request = Request(
                id=uuid.uuid4(),
                reference=f"REQ-2026-{number:06d}",
                area=PQ if rng.random() < 0.8 else OTHER_AREA,
                question_set_version=1,
                state=state,
                requesting_authority_id=requesting,
                requester_user_id=rng.choice(users),
                responding_authority_id=rng.choice([None, *(a for a in authorities if a != requesting)]),
                allocated_user_id=rng.choice([None, None, *users]),
                requester_language="en",
                reply_date=rng.choice([None, START.date() + timedelta(days=rng.randint(1, 30))]),
                proposed_reply_date=rng.choice([None, None, START.date() + timedelta(days=40)]),
                approving_coordinator_id=rng.choice([None, *coordinators]),
                referral_coordinator_ids=[str(c) for c in referred],
                created_at=START,
                version=1,
            )
            uow.session.add(request)
            opinions += [(request.id, c) for c in referred if rng.random() < 0.3]
        await uow.session.flush()
        for request_id, coordinator in opinions:
            uow.session.add(
                ReferralOpinion(request_id=request_id, coordinator_id=coordinator, given_by=users[0], at=START)
            )


def callers(world: ExchangeWorld, rng: random.Random, users: list[uuid.UUID]) -> list[Caller]:
    found = []
    for authority in world.authorities.values():
        for _ in range(6):
            roles = {PQ: rng.sample(ROLES, rng.randint(0, 3)), OTHER_AREA: rng.sample(ROLES, rng.randint(0, 1))}
            authority_roles = rng.choice([[], [], ["request_handler"], ["allocator"]])
            principal = Principal.model_validate(
                {
                    "sub": str(rng.choice(users)),
                    "authority": str(authority),
                    "country": "RO",
                    "roles": roles,
                    "authority_roles": authority_roles,
                }
            )
            found.append(Caller(principal))
    return found


WORLD_OPTIONS = {"allocation": True}  # the world fixture: tests/exchange/conftest.py


async def test_each_caller_sees_exactly_the_actions_the_rules_give_soonest_deadline_first(world):
    rng = random.Random(8)
    users = [uuid.uuid4() for _ in range(3)]
    await many_requests(world, rng, users)
    async with world.runtime.messaging.transaction() as uow:
        requests = list((await uow.session.scalars(select(Request))).all())
        opinions = {
            (o.request_id, o.coordinator_id) for o in (await uow.session.scalars(select(ReferralOpinion))).all()
        }
        allocating = {a.id: a.allocation_enabled for a in (await uow.session.scalars(select(KnownAuthority))).all()}
    assert any(allocating.values()) and not all(allocating.values())
    checked = 0
    for caller in callers(world, rng, users):
        given = {request_id for request_id, coordinator in opinions if coordinator == caller.authority_id}
        expected = expected_actions(caller, requests, allocating[caller.authority_id], given)
        async with world.runtime.messaging.transaction() as uow:
            whole = await action_list(uow, caller, page=1, page_size=1000)
            pages = range(1, len(expected) // 7 + 3)  # the last one past the end
            paged = [await action_list(uow, caller, page=page, page_size=7) for page in pages]
        assert [(str(i.request.id), i.action, i.role) for i in whole.items] == expected
        assert whole.total == len(expected)
        assert [str(i.request.id) for page in paged for i in page.items] == [e[0] for e in expected]
        assert {page.total for page in paged} == {len(expected)}
        checked += len(expected)
    assert checked > 200  # the draw reaches every role, not a few lucky requests
