"""Who gets which alert for each event (rules E1–E5, S8, S11, S13, S14, S15).

A request alert goes to people, never to "the other authority" in general:

- a request received (rule E5), also by the new responder after a forwarding: with allocation off
  the responding authority's request handlers in the area, with allocation on its allocators
  (rule S8), and in both cases the authority's own addresses;
- an allocation: the handler it was allocated to (rule E2), and on a re-allocation the handler it
  was taken from too, with ``request_allocated_elsewhere`` (it names no one: rule S11);
- some questions forwarded to another authority of the responding country (rule E1): the new
  responder as for a request received (the exchange's ``received`` event of the new request), and
  the requester side below with ``request_questions_forwarded``, naming the authority the questions
  went to and the new request's reference (no person: rule S11);
- awaiting approval (rule E3): the approving coordinator's request handlers and data administrators
  in the area;
- the other transitions: the other side's handlers, where the requester side is the requesting
  authority's request handlers in the area (rule S7: a colleague stands in; the one who sent it
  when none is known) and the responder side is the allocated handler (allocation on and one
  allocated) or else the responding authority's request handlers in the area; referred
  coordinators too (rule E4) as their referral setting says (rule S14).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Literal

from services.notifier.deliveries import Alert, Audience, no_variables, queue_alerts
from services.notifier.models import KnownAuthority, KnownUser
from services.notifier.names import area_name, country_name
from services.notifier.read_model import authority_name, coordinator_setting, users_with_role
from shared.contracts.exchange import RequestChange
from shared.contracts.registry import AuthorityState, TemporaryPassword, UserLocked
from shared.events.envelope import Event
from shared.outbox import UnitOfWork

Side = Literal["requester", "responder"]

REQUEST_HANDLER = "request_handler"
ALLOCATOR = "allocator"
DATA_ADMINISTRATOR = "data_administrator"
LOCAL_DATA_ADMINISTRATOR = "local_data_administrator"  # authority-wide (rule S9)
REFERRAL_USER = "referral_user"

# The authority an alert names as ``authority_name`` (see each template): the responding one for
# these kinds, the requesting one for the others.
NAMES_THE_RESPONDER = frozenset(
    {"reply_approval_needed", "request_answered", "request_forwarded", "reply_date_proposed"}
)


class RecipientNotYetKnown(Exception):
    """The event names a user the read model does not hold yet (its state event comes later): the
    event is handled again after the bus's retry delay rather than losing a one-off e-mail."""


def link_path(*parts: object) -> str:
    """A front-end path; the sender puts IMI_PUBLIC_URL before it."""
    return "/" + "/".join(str(part) for part in parts)


class RequestAlerts:
    """The alerts one request event causes."""

    def __init__(self, uow: UnitOfWork, event: Event[RequestChange]) -> None:
        self.uow = uow
        self.event = event
        self.data = event.data
        self.link = link_path("requests", self.data.request_id)
        self.alerts: list[Alert] = []
        self._authorities: dict[uuid.UUID, KnownAuthority | None] = {}

    async def authority(self, authority_id: uuid.UUID | None) -> KnownAuthority | None:
        if authority_id is None:
            return None
        if authority_id not in self._authorities:
            self._authorities[authority_id] = await self.uow.session.get(KnownAuthority, authority_id)
        return self._authorities[authority_id]

    async def user(self, user_id: uuid.UUID | None) -> KnownUser | None:
        return None if user_id is None else await self.uow.session.get(KnownUser, user_id)

    async def add(self, kind: str, audience: Audience) -> None:
        requesting = await self.authority(self.data.requesting_authority_id)
        responding = await self.authority(self.data.responding_authority_id)
        data = self.data
        if kind == "request_questions_forwarded":
            named = await self.authority(data.forwarded_to_authority_id)
        else:
            named = responding if kind in NAMES_THE_RESPONDER else requesting
        reply_date = data.reply_date
        if kind == "reply_date_proposed":
            # The date proposed, once the exchange's events carry it (an optional field to add to
            # RequestChange, see the notifier's report); until then the current reply date.
            reply_date = data.proposed_reply_date or reply_date

        def context(language: str) -> dict[str, Any]:
            variables: dict[str, Any] = {
                "request_reference": data.reference,
                "legislative_area": area_name(data.area, language),
                "requesting_country": country_name(requesting.country if requesting else None, language),
                "responding_country": country_name(responding.country if responding else None, language),
                "authority_name": authority_name(named, language),
            }
            if reply_date is not None:
                variables["reply_date"] = reply_date
            if kind == "request_questions_forwarded" and data.forwarded_as_reference is not None:
                variables["forwarded_as_reference"] = data.forwarded_as_reference
            return variables

        self.alerts.append(Alert(kind, audience, context, self.link, data.request_id, data.reference))

    async def queue(self) -> None:
        await queue_alerts(self.uow, self.event, self.alerts)

    # -- audiences ---------------------------------------------------------------------------------

    async def receiving(self) -> Audience:
        """Rules E5, S8: the responding authority's allocators (allocation on) or request handlers
        (allocation off), and its addresses."""
        audience = Audience()
        authority_id = self.data.responding_authority_id
        responder = await self.authority(authority_id)
        if responder is None:
            audience.skip_authority(authority_id)
            return audience
        handlers = await users_with_role(self.uow, responder.id, [REQUEST_HANDLER], self.data.area)
        if responder.allocation_enabled:
            allocators = await users_with_role(self.uow, responder.id, [ALLOCATOR], self.data.area)
            audience.add_users(allocators)
            if not audience:
                # Rule S8 says an allocator exists; should none be reachable, the handlers are told.
                audience.add_users(handlers)
        else:
            audience.add_users(handlers)
        audience.add_addresses(responder.id, responder)
        return audience

    async def side(self, side: Side, audience: Audience | None = None) -> Audience:
        audience = audience if audience is not None else Audience()
        if side == "requester":
            # The requesting authority's request handlers in the area, not only the one who sent it:
            # a colleague stands in during holidays and sick leave (rule S7).
            requesting = await self.authority(self.data.requesting_authority_id)
            handlers = (
                await users_with_role(self.uow, requesting.id, [REQUEST_HANDLER], self.data.area)
                if requesting is not None
                else []
            )
            if handlers:
                audience.add_users(handlers)
            else:
                # None known here (yet): the one who sent it, as the event names them.
                audience.add_user(self.data.requester_user_id, await self.user(self.data.requester_user_id))
            return audience
        authority_id = self.data.responding_authority_id
        responder = await self.authority(authority_id)
        if responder is None:
            audience.skip_authority(authority_id)
        elif responder.allocation_enabled and self.data.allocated_user_id is not None:
            audience.add_user(self.data.allocated_user_id, await self.user(self.data.allocated_user_id))
        else:
            audience.add_users(await users_with_role(self.uow, responder.id, [REQUEST_HANDLER], self.data.area))
        return audience

    async def other_side(self, default: Iterable[Side]) -> Audience:
        """The side that did not act: the actor's authority tells; a coordinator acting for a side
        (approving a reply, say) or the system leaves it to ``default``."""
        actor = self.data.actor_authority_id
        if actor is not None and actor == self.data.requesting_authority_id:
            sides: Iterable[Side] = ("responder",)
        elif actor is not None and actor == self.data.responding_authority_id:
            sides = ("requester",)
        else:
            sides = default
        audience = Audience()
        for side in sides:
            await self.side(side, audience)
        return audience

    async def coordinator_users(self, coordinator_id: uuid.UUID | None, roles: Iterable[str]) -> Audience:
        audience = Audience()
        if coordinator_id is None:
            return audience
        if await self.authority(coordinator_id) is None:
            audience.skip_authority(coordinator_id)
            return audience
        audience.add_users(await users_with_role(self.uow, coordinator_id, roles, self.data.area))
        return audience

    async def referred_coordinators(self, audience: Audience) -> Audience:
        """Rule S14: a referred coordinator's request handlers and data administrators, or its
        referral users when it delegated referrals; none when it takes no part."""
        for coordinator_id in self.data.referral_coordinator_ids:
            coordinator = await self.authority(coordinator_id)
            if coordinator is None:
                audience.skip_authority(coordinator_id)
                continue
            referral = coordinator_setting(coordinator, self.data.area)["referral"]
            if referral == "no":
                continue
            roles = [REFERRAL_USER] if referral == "delegated" else [REQUEST_HANDLER, DATA_ADMINISTRATOR]
            audience.add_users(await users_with_role(self.uow, coordinator_id, roles, self.data.area))
        return audience


async def request_received(uow: UnitOfWork, event: Event[RequestChange]) -> None:
    """Rule E5: a new request (or some of its questions, as a request of their own) arrived."""
    alerts = RequestAlerts(uow, event)
    await alerts.add("request_received", await alerts.receiving())
    await alerts.queue()


async def request_forwarded(uow: UnitOfWork, event: Event[RequestChange]) -> None:
    """The new responder receives the request (rule E5); the requester learns where it went."""
    alerts = RequestAlerts(uow, event)
    await alerts.add("request_received", await alerts.receiving())
    await alerts.add("request_forwarded", await alerts.side("requester"))
    await alerts.queue()


async def request_questions_forwarded(uow: UnitOfWork, event: Event[RequestChange]) -> None:
    """Rule E1: the requesting side learns that some questions went to another authority of the
    responding country, which one, and as which request (that request's own ``received`` event
    alerts the new responder)."""
    alerts = RequestAlerts(uow, event)
    await alerts.add("request_questions_forwarded", await alerts.side("requester"))
    await alerts.queue()


async def request_allocated(uow: UnitOfWork, event: Event[RequestChange]) -> None:
    """Rule E2: the handler the request was allocated to; on a re-allocation, the handler it was
    taken from learns that a colleague (not named) now handles it."""
    alerts = RequestAlerts(uow, event)
    data = event.data
    audience = Audience()
    audience.add_user(data.allocated_user_id, await alerts.user(data.allocated_user_id))
    await alerts.add("request_allocated", audience)
    previous = data.previously_allocated_user_id
    if previous is not None and previous != data.allocated_user_id:
        taken_from = Audience()
        taken_from.add_user(previous, await alerts.user(previous))
        await alerts.add("request_allocated_elsewhere", taken_from)
    await alerts.queue()


async def approval_needed(uow: UnitOfWork, event: Event[RequestChange], kind: str) -> None:
    """Rule E3: the approving coordinator's request handlers and data administrators in the area."""
    alerts = RequestAlerts(uow, event)
    audience = await alerts.coordinator_users(
        event.data.approving_coordinator_id, [REQUEST_HANDLER, DATA_ADMINISTRATOR]
    )
    await alerts.add(kind, audience)
    await alerts.queue()


async def other_side_told(uow: UnitOfWork, event: Event[RequestChange], kind: str, default: tuple[Side, ...]) -> None:
    alerts = RequestAlerts(uow, event)
    await alerts.add(kind, await alerts.other_side(default))
    await alerts.queue()


async def request_referred(uow: UnitOfWork, event: Event[RequestChange]) -> None:
    """Rule E4: the responder's handlers and the referred coordinators' users."""
    alerts = RequestAlerts(uow, event)
    audience = await alerts.other_side(("responder",))
    await alerts.add("request_referred", await alerts.referred_coordinators(audience))
    await alerts.queue()


async def request_withdrawn(uow: UnitOfWork, event: Event[RequestChange]) -> None:
    """The responder need not answer; a request withdrawn while awaiting its coordinator's
    approval never reached the responder, who is not told."""
    if event.data.previous_state == "awaiting_request_approval":
        return
    await other_side_told(uow, event, "request_withdrawn", ("responder",))


async def request_overdue(uow: UnitOfWork, event: Event[RequestChange]) -> None:
    """The responding handlers: the reply date has passed without an answer."""
    alerts = RequestAlerts(uow, event)
    await alerts.add("request_overdue", await alerts.side("responder"))
    await alerts.queue()


async def temporary_password(uow: UnitOfWork, event: Event[TemporaryPassword]) -> None:
    """Rule S11: the user alone gets the password, never the user name; the password stays sealed
    in the row until the sender writes this one e-mail."""
    user = await uow.session.get(KnownUser, event.data.user_id)
    if user is None:
        raise RecipientNotYetKnown(f"user {event.data.user_id} is not in the read model yet")
    audience = Audience()
    audience.add_user(user.id, user)
    link = link_path("login")
    await queue_alerts(
        uow,
        event,
        [Alert("temporary_password", audience, no_variables, link, sealed_secret=event.data.sealed_password)],
    )


async def account_locked(uow: UnitOfWork, event: Event[UserLocked]) -> None:
    """Five wrong attempts blocked the account until a reset ("lost credentials"): the user is told
    with ``account_locked``, and the authority's other local data administrators, who can reset the
    password (rule S9), with ``account_locked_administrator``, each in their own language. That
    alert links to the authority's users and never says whose account it is (rules P1, S11); a
    local data administrator whose own account is locked cannot act on it and is not told."""
    data = event.data
    user = await uow.session.get(KnownUser, data.user_id)
    audience = Audience()
    audience.add_user(data.user_id, user)
    administrators = Audience()
    administrators.add_users(
        administrator
        for administrator in await users_with_role(uow, data.authority_id, [LOCAL_DATA_ADMINISTRATOR], None)
        if administrator.id != data.user_id and administrator.status != "locked"
    )
    await queue_alerts(
        uow,
        event,
        [
            Alert("account_locked", audience, no_variables, link_path("login")),
            Alert(
                "account_locked_administrator",
                administrators,
                no_variables,
                link_path("authorities", data.authority_id, "users"),
            ),
        ],
    )


async def registration_awaiting_validation(uow: UnitOfWork, event: Event[AuthorityState]) -> None:
    """Rule S13: the registering coordinator's data administrators validate a new authority."""
    state = event.data
    if state.status != "pending_validation":
        return
    coordinator_ids = [state.registered_by] if state.registered_by else []
    if not coordinator_ids:
        coordinator_ids = list(dict.fromkeys(rc.coordinator_id for rc in state.request_coordinators))
    audience = Audience()
    for coordinator_id in coordinator_ids:
        if await uow.session.get(KnownAuthority, coordinator_id) is None:
            audience.skip_authority(coordinator_id)
            continue
        areas: list[str | None] = list(state.areas) or [None]
        for area in areas:
            audience.add_users(await users_with_role(uow, coordinator_id, [DATA_ADMINISTRATOR], area))
    registered = await uow.session.get(KnownAuthority, state.id)
    link = link_path("authorities", state.id)

    def context(language: str) -> dict[str, Any]:
        return {
            "authority_name": authority_name(registered, language) or state.informal_name,
            "legislative_area": ", ".join(area_name(area, language) for area in state.areas),
        }

    await queue_alerts(uow, event, [Alert("registration_awaiting_validation", audience, context, link)])
