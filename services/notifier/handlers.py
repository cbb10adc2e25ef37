"""Events the notifier consumes, each handled once inside its own transaction: the registry's state
(its read model of the recipients), the registry's one-off alerts (temporary password, locked
account) and the exchange's request transitions that someone must hear of. A handler only writes
delivery rows; the sender sends them (it never talks to SMTP itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.notifier import alerts
from services.notifier.read_model import upsert_authority, upsert_user
from shared.contracts import exchange
from shared.contracts.exchange import RequestChange
from shared.contracts.registry import (
    AUTHORITY_REGISTERED,
    AUTHORITY_STATE_EVENTS,
    TEMPORARY_PASSWORD_ISSUED,
    USER_LOCKED,
    USER_STATE_EVENTS,
    AuthorityState,
    TemporaryPassword,
    UserLocked,
    UserState,
)
from shared.events.envelope import Event
from shared.outbox import Handlers, UnitOfWork

handlers = Handlers()

RequestHandler = Callable[[UnitOfWork, Event[RequestChange]], Awaitable[None]]


async def _authority(uow: UnitOfWork, event: Event[AuthorityState]) -> None:
    await upsert_authority(uow, event.data)


async def _user(uow: UnitOfWork, event: Event[UserState]) -> None:
    await upsert_user(uow, event.data)


for _contract in AUTHORITY_STATE_EVENTS:
    if _contract is not AUTHORITY_REGISTERED:
        handlers.on(_contract)(_authority)
for _user_contract in USER_STATE_EVENTS:
    handlers.on(_user_contract)(_user)


@handlers.on(AUTHORITY_REGISTERED)
async def on_authority_registered(uow: UnitOfWork, event: Event[AuthorityState]) -> None:
    """Rule S13: a registration awaiting validation is announced to its coordinator."""
    await upsert_authority(uow, event.data)
    await uow.session.flush()
    await alerts.registration_awaiting_validation(uow, event)


@handlers.on(TEMPORARY_PASSWORD_ISSUED)
async def on_temporary_password_issued(uow: UnitOfWork, event: Event[TemporaryPassword]) -> None:
    await alerts.temporary_password(uow, event)


@handlers.on(USER_LOCKED)
async def on_user_locked(uow: UnitOfWork, event: Event[UserLocked]) -> None:
    await alerts.account_locked(uow, event)


def _telling_the_other_side(kind: str, *default: alerts.Side) -> RequestHandler:
    async def tell_the_other_side(uow: UnitOfWork, event: Event[RequestChange]) -> None:
        await alerts.other_side_told(uow, event, kind, default)

    tell_the_other_side.__name__ = f"on_{kind}"
    return tell_the_other_side


def _awaiting_approval(kind: str) -> RequestHandler:
    async def awaiting_approval(uow: UnitOfWork, event: Event[RequestChange]) -> None:
        await alerts.approval_needed(uow, event, kind)

    awaiting_approval.__name__ = f"on_{kind}"
    return awaiting_approval


REQUEST_ALERTS: dict[str, RequestHandler] = {
    exchange.REQUEST_RECEIVED.name: alerts.request_received,
    exchange.REQUEST_FORWARDED.name: alerts.request_forwarded,
    exchange.REQUEST_QUESTIONS_FORWARDED.name: alerts.request_questions_forwarded,
    exchange.REQUEST_ALLOCATED.name: alerts.request_allocated,
    exchange.REQUEST_SUBMITTED_FOR_APPROVAL.name: _awaiting_approval("request_approval_needed"),
    exchange.REPLY_SUBMITTED_FOR_APPROVAL.name: _awaiting_approval("reply_approval_needed"),
    exchange.REQUEST_ANSWERED.name: _telling_the_other_side("request_answered", "requester"),
    exchange.ADDITIONAL_INFORMATION_REQUESTED.name: _telling_the_other_side(
        "additional_information_requested", "responder"
    ),
    exchange.REPLY_DATE_PROPOSED.name: _telling_the_other_side("reply_date_proposed", "requester"),
    exchange.REQUEST_REFERRED.name: alerts.request_referred,
    exchange.REQUEST_CLOSED.name: _telling_the_other_side("request_closed", "requester", "responder"),
    exchange.REQUEST_WITHDRAWN.name: alerts.request_withdrawn,
    exchange.REQUEST_OVERDUE.name: alerts.request_overdue,
}

for _request_contract in exchange.REQUEST_EVENTS:
    if _request_contract.name in REQUEST_ALERTS:
        handlers.on(_request_contract)(REQUEST_ALERTS[_request_contract.name])
