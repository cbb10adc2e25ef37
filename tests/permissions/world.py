"""One world for the permission matrix, across the four services, with every actor of
``tests/permissions/matrix.py``.

The registry is built through its own API (on ``tests/registry/world.py``'s small world). Each
actor's token stands for the claims the registry itself would sign for that user
(``services.registry.tokens.access_claims``), so all four services read the same actors. The
registry's events are fed to the exchange and the notifier, the exchange's to the notifier and the
retention service, through each consumer's own code (inbox and handlers), as the bus would.

Requests carry personal data with unique markers (subject, a personal-data answer, free text, an
attachment); the tests check where they appear.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from services import create_app, load_definition
from services.exchange.models import Attachment, Message, Transition
from services.exchange.models import messaging as exchange_messaging
from services.notifier.models import Delivery
from services.notifier.models import messaging as notifier_messaging
from services.notifier.state import configure
from services.registry.models import AuditEntry, Authority, User
from services.registry.models import messaging as registry_messaging
from services.registry.tokens import access_claims
from services.retention.models import PurgeOrder
from services.retention.models import messaging as retention_messaging
from shared.auth import InvalidToken, Principal
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.clock import FrozenClock
from shared.events.envelope import Envelope
from shared.migrations import upgrade
from shared.service import ServiceRuntime
from shared.settings import Settings
from tests.exchange.world import START
from tests.notifier.world import SmtpServer, notifier_settings
from tests.permissions.matrix import Actor, Row
from tests.registry.conftest import RegistryUnderTest, start_registry
from tests.registry.world import PQ, SERVICES_AREA, World, build_world, college

# Unique strings of the requests' personal data (rule P3): none may appear where the matrix says no.
FAMILY_NAME = "Zorbazescu-PD-4711"
DATE_OF_BIRTH = "1979-11-23"
PERSONAL_ANSWER = "Sanction-PD-8842"
FREE_TEXT = "Comment-PD-3319"
ATTACHMENT_TEXT = "Attachment-PD-5570"
MARKERS = (FAMILY_NAME, DATE_OF_BIRTH, PERSONAL_ANSWER, FREE_TEXT, ATTACHMENT_TEXT)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% " + ATTACHMENT_TEXT.encode() + b"\ntrailer\n%%EOF\n"
QUESTIONS = ["pq.identity.document_matches", "pq.sanctions.details", "pq.diploma.authentic"]
ANSWERS = {
    "pq.identity.document_matches": "yes",
    "pq.sanctions.details": PERSONAL_ANSWER,
    "pq.diploma.authentic": "yes",
}


class ActorTokens:
    """Bearer token -> principal. Actor tokens carry the registry's claims for the actor's user; a
    bare user id (the registry tests' convention, used while building) names just the user."""

    def __init__(self) -> None:
        self.principals: dict[str, Principal] = {}

    async def verify(self, token: str) -> Principal:
        if token in self.principals:
            return self.principals[token]
        try:
            uuid.UUID(token)
        except ValueError as exc:
            raise InvalidToken("unknown test token") from exc
        return Principal.model_validate({"sub": token, "authority": "?", "country": "??"})


@dataclass
class Call:
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    files: Any = None


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient  # for setting the world up
    clients: dict[str, httpx.AsyncClient]  # one per actor, each from an address of its own

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime


@dataclass
class PermissionWorld:
    services: dict[str, Service]
    tokens: ActorTokens
    registry_world: World
    authorities: dict[str, str] = field(default_factory=dict)  # name -> id, in every service
    users: dict[str, str] = field(default_factory=dict)  # name -> user id
    shared: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> what refused actors share
    fed: dict[tuple[str, str], int] = field(default_factory=dict)  # (producer, consumer) -> last seq fed

    # -- calling -------------------------------------------------------------------------------------

    async def call(self, service: str, method: str, call: Call, who: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {who}"} if who and who != Actor.anonymous else {}
        chosen = self.services[service]
        client = chosen.clients.get(who or Actor.anonymous, chosen.client)
        return await client.request(
            method, call.path, params=call.params, json=call.json, files=call.files, headers=headers
        )

    async def ok(self, service: str, method: str, path: str, who: str, **kwargs: Any) -> Any:
        """A setup call that must succeed; its JSON body (None when empty)."""
        response = await self.call(service, method, Call(path, **kwargs), who)
        assert response.status_code < 300, f"setup {method} {path} as {who}: {response.text}"
        return response.json() if response.content else None

    async def target(self, row: Row, *, fresh: bool) -> Call:
        """The call of ``row``: on a fresh target when an allowed call would use the shared one up."""
        if fresh:
            params = await TARGETS[row.target](self)
        else:
            if row.target not in self.shared:
                self.shared[row.target] = await TARGETS[row.target](self)
            params = self.shared[row.target]
        call = Call(row.path.format(**params))
        body = BODIES.get((row.service, row.method, row.path))
        if body is not None:
            body(self, params, call)
        return call

    # -- events between the services ----------------------------------------------------------------------

    async def feed(self, producer: str, consumer: str) -> None:
        """Hand ``consumer`` every event ``producer`` committed since the last feed."""
        outbox = {"registry": registry_messaging, "exchange": exchange_messaging}[producer].outbox
        source = self.services[producer].runtime
        target = self.services[consumer].runtime
        after = self.fed.get((producer, consumer), 0)
        async with source.sessions() as session:
            rows = (
                await session.execute(
                    select(outbox.c.seq, outbox.c.payload).where(outbox.c.seq > after).order_by(outbox.c.seq)
                )
            ).all()
        for seq, payload in rows:
            await target.messaging.process(Envelope.model_validate_json(payload), target.definition.handlers)
            self.fed[(producer, consumer)] = seq

    async def footprint(self, service: str) -> tuple[int, ...]:
        """Row counts a call that changes anything changes: a refused call must leave them alone."""
        tables = {
            "registry": (registry_messaging.outbox, Authority.__table__, User.__table__, AuditEntry.__table__),
            "exchange": (exchange_messaging.outbox, Transition.__table__, Message.__table__, Attachment.__table__),
            "notifier": (notifier_messaging.outbox,),
            "retention": (retention_messaging.outbox, PurgeOrder.__table__),
        }[service]
        async with self.services[service].runtime.sessions() as session:
            counts = [int(await session.scalar(select(func.count()).select_from(t)) or 0) for t in tables]
            if service == "notifier":
                statuses = await session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
                counts += [int(n) for _, n in sorted(statuses.all())]
        return tuple(counts)

    async def delivery(self, *, failed: bool) -> int:
        """An e-mail delivery the notifier made from the events (marked failed when asked)."""
        return await _delivery_id(self, failed=failed)

    # -- the registry ----------------------------------------------------------------------------------

    async def registry_ok(self, method: str, path: str, who: str, **kwargs: Any) -> Any:
        """A registry call as a user of the registry tests' world (their token is the user id)."""
        return await self.ok("registry", method, path, self.registry_world.ids.get(who, who), **kwargs)

    async def new_authority(self, name: str, *, validate: bool = True, **overrides: Any) -> str:
        """A Romanian competent authority registered by the national coordinator (and validated)."""
        body = college(f"{name} {uuid.uuid4().hex[:6]}", **overrides)
        created = await self.registry_ok("POST", "/authorities", "ro_coordinator", json=body)
        authority_id: str = created["authority"]["id"]
        if validate:
            await self.registry_ok("POST", f"/authorities/{authority_id}/validate", "ro_coordinator")
        return authority_id

    async def new_colleague(self, name: str, roles: list[dict[str, Any]]) -> str:
        body = {
            "name": f"Colleague {name}",
            "email": f"{name}.{uuid.uuid4().hex[:8]}@cmcluj.example.ro",
            "language": "ro",
            "roles": roles,
        }
        created = await self.registry_ok(
            "POST", f"/authorities/{self.authorities['college']}/users", "college_first_user", json=body
        )
        user_id: str = created["id"]
        return user_id

    # -- the exchange ----------------------------------------------------------------------------------

    def draft_body(self, to: str, **overrides: Any) -> dict[str, Any]:
        body = {
            "area": PQ,
            "responding_authority_id": self.authorities[to],
            "question_ids": QUESTIONS,
            "subject": {
                "family_name": FAMILY_NAME,
                "given_names": "Ioana",
                "date_of_birth": DATE_OF_BIRTH,
                "profession": "doctor",
            },
            "reply_date": "2026-04-01",
            "comment": f"Please check the diploma. {FREE_TEXT}",
        }
        body.update(overrides)
        return body

    async def exchange_ok(self, method: str, path: str, who: str, **kwargs: Any) -> Any:
        return await self.ok("exchange", method, path, who, **kwargs)

    async def act(self, request_id: str, action: str, who: str, **body: Any) -> None:
        await self.exchange_ok("POST", f"/requests/{request_id}/{action}", who, json=body)

    async def sent_to_college(self, who: str = Actor.other_country, *, allocate: bool = True) -> str:
        """A request of the Irish council (or ``who``'s authority) waiting for the college's acceptance,
        allocated to the college's request handler (rule E2)."""
        created = await self.exchange_ok("POST", "/requests", who, json=self.draft_body("college"))
        request_id: str = created["id"]
        await self.act(request_id, "send", who)
        if allocate:
            await self.act(request_id, "allocate", Actor.allocator, user_id=self.users[Actor.handler])
        return request_id

    async def in_progress(self) -> str:
        request_id = await self.sent_to_college()
        await self.act(request_id, "accept", Actor.handler)
        return request_id

    async def answered_in_progress(self) -> str:
        request_id = await self.in_progress()
        await self.exchange_ok("PUT", f"/requests/{request_id}/answers", Actor.handler, json={"answers": ANSWERS})
        return request_id

    async def reply_awaiting_approval(self) -> str:
        request_id = await self.answered_in_progress()
        await self.act(request_id, "reply", Actor.handler, comment=f"Answered. {FREE_TEXT}")
        return request_id

    async def answered(self) -> str:
        request_id = await self.reply_awaiting_approval()
        await self.act(request_id, "reply/approve", Actor.coord_full)
        return request_id

    async def information_requested(self) -> str:
        request_id = await self.answered()
        await self.act(request_id, "additional-information", Actor.other_country, comment="More, please.")
        return request_id

    async def information_refused(self) -> str:
        request_id = await self.information_requested()
        await self.act(request_id, "additional-information/refusal", Actor.handler, comment="We cannot.")
        return request_id

    async def received_unallocated(self) -> str:
        return await self.sent_to_college(allocate=False)

    async def reply_date_proposed(self) -> str:
        request_id = await self.sent_to_college()
        await self.act(request_id, "reply-date/proposal", Actor.handler, reply_date="2026-05-01")
        return request_id

    async def referred(self) -> str:
        request_id = await self.information_refused()
        await self.act(request_id, "referral", Actor.other_country)
        return request_id

    async def closed(self) -> str:
        request_id = await self.answered()
        await self.act(request_id, "close", Actor.other_country)
        return request_id

    async def college_draft(self) -> str:
        body = self.draft_body("ie_council")
        created = await self.exchange_ok("POST", "/requests", Actor.handler, json=body)
        request_id: str = created["id"]
        return request_id

    async def awaiting_request_approval(self) -> str:
        request_id = await self.college_draft()
        await self.act(request_id, "send", Actor.handler)
        return request_id


# -- targets: what each row's call is made on (path parameters, and ids its body needs) --------------

Params = dict[str, str]
TARGETS: dict[str, Callable[[PermissionWorld], Awaitable[Params]]] = {}
TARGET_DESCRIPTIONS: dict[str, str] = {}


def target(name: str, description: str) -> Callable[[Callable[[PermissionWorld], Awaitable[Params]]], Any]:
    def register(build: Callable[[PermissionWorld], Awaitable[Params]]) -> Any:
        TARGETS[name] = build
        TARGET_DESCRIPTIONS[name] = description
        return build

    return register


def request_target(name: str, state: str, description: str) -> None:
    """A request of the Irish council to the college (or as described), brought to a state."""

    async def build(world: PermissionWorld) -> Params:
        return {"request_id": await getattr(world, state)()}

    TARGETS[name] = build
    TARGET_DESCRIPTIONS[name] = description


async def _nothing(world: PermissionWorld) -> Params:
    return {}


for _name, _description in (
    ("none", "the route alone"),
    ("clock", "a step of one day"),
    ("wrong_password", "a user name that does not exist"),
    ("unknown_challenge", "a security-code challenge that does not exist"),
    ("unknown_setup_token", "a set-up token that does not exist"),
    ("unknown_refresh_token", "a refresh token that does not exist"),
    ("country", "Romania"),
    ("new_authority", "a new Romanian authority of Cluj in professional qualifications"),
    ("new_invitation", "an invitation to a new e-mail address"),
    ("within", "the next 30 days"),
):
    TARGETS[_name] = _nothing
    TARGET_DESCRIPTIONS[_name] = _description


@target("college", "the college")
async def _college(world: PermissionWorld) -> Params:
    return {"authority_id": world.authorities["college"], "language": "en"}


@target("invitation", "a valid invitation of the national coordinator, used once")
async def _invitation(world: PermissionWorld) -> Params:
    email = f"inv.{uuid.uuid4().hex[:8]}@example.ro"
    invited = await world.registry_ok("POST", "/invitations", "ro_coordinator", json={"email": email})
    return {"token": invited["token"]}


@target("pending_authority", "an authority of Cluj registered by the national coordinator, pending validation")
async def _pending(world: PermissionWorld) -> Params:
    return {"authority_id": await world.new_authority("Pending", validate=False)}


@target("area_grant", "services, for an authority of Cluj in professional qualifications only")
async def _area_grant(world: PermissionWorld) -> Params:
    return {"authority_id": await world.new_authority("Area")}


@target("new_link", "the college, linking a new Romanian authority")
async def _new_link(world: PermissionWorld) -> Params:
    return {"authority_id": world.authorities["college"], "other": await world.new_authority("Linkable")}


@target("link", "the college's link to a Romanian authority")
async def _link(world: PermissionWorld) -> Params:
    other = await world.new_authority("Linked")
    college_id = world.authorities["college"]
    await world.registry_ok(
        "POST", f"/authorities/{college_id}/links", "college_first_user", json={"linked_authority_id": other}
    )
    return {"authority_id": college_id, "linked_authority_id": other}


@target("request_coordinator", "the delegated coordinator, request coordinator of the college in services")
async def _request_coordinator(world: PermissionWorld) -> Params:
    college_id = world.authorities["college"]
    coordinator = world.authorities["cluj_coordinator"]
    await world.registry_ok(
        "PUT",
        f"/authorities/{college_id}/request-coordinators",
        "college_first_user",
        json={"area": SERVICES_AREA, "coordinator_id": coordinator, "full_view": False},
    )
    return {"authority_id": college_id, "area": SERVICES_AREA, "coordinator_id": coordinator}


@target("authority_to_deactivate", "an authority of Cluj registered by the national coordinator")
async def _to_deactivate(world: PermissionWorld) -> Params:
    return {"authority_id": await world.new_authority("Closing")}


@target("new_user", "the college, registering a new colleague")
async def _new_user(world: PermissionWorld) -> Params:
    return {"authority_id": world.authorities["college"]}


@target("coordinator_settings", "the national coordinator in professional qualifications, settings unchanged")
async def _coordinator_settings(world: PermissionWorld) -> Params:
    return {"coordinator_id": world.authorities["ro_coordinator"], "area": PQ}


@target("colleague", "the college's request handler")
async def _colleague(world: PermissionWorld) -> Params:
    return {"user_id": world.users[Actor.handler]}


@target("user_to_change", "another request handler of the college")
async def _user_to_change(world: PermissionWorld) -> Params:
    return {"user_id": await world.new_colleague("changed", [{"role": "request_handler", "area": PQ}])}


@target("college_received", "the college's received requests")
async def _college_received(world: PermissionWorld) -> Params:
    return {"authority_id": world.authorities["college"]}


@target("request", "the Irish council's request to the college, in progress, with everything in it")
async def _request(world: PermissionWorld) -> Params:
    return {"request_id": world.authorities["main_request"]}


@target("attachment", "the attachment of that request")
async def _attachment(world: PermissionWorld) -> Params:
    return {"request_id": world.authorities["main_request"], "attachment_id": world.authorities["main_attachment"]}


@target("request_between_others", "another Irish authority's request to the college")
async def _between_others(world: PermissionWorld) -> Params:
    return {"request_id": world.authorities["other_request"]}


@target("new_draft", "a draft to another Irish authority")
async def _new_draft(world: PermissionWorld) -> Params:
    return {}


for _name, _state, _description in (
    ("draft", "college_draft", "a draft of the college to the Irish council"),
    ("request_awaiting_approval", "awaiting_request_approval", "the college's request waiting for approval (E3)"),
    ("received", "sent_to_college", "a request received by the college, allocated to its request handler"),
    ("received_unallocated", "received_unallocated", "a request received by the college, not yet allocated"),
    ("in_progress", "in_progress", "a request the college accepted"),
    ("answered_in_progress", "answered_in_progress", "a request whose answers the college wrote"),
    ("reply_awaiting_approval", "reply_awaiting_approval", "a reply waiting for the national coordinator (E3)"),
    ("answered", "answered", "an answered request"),
    ("information_requested", "information_requested", "a request with more information asked (E4)"),
    ("information_refused", "information_refused", "a request whose additional information was refused"),
    ("referred", "referred", "a request referred to the coordinators (E4)"),
    ("closed", "closed", "a closed request"),
    ("reply_date_proposed", "reply_date_proposed", "a request with a later reply date proposed"),
):
    request_target(_name, _state, _description)


@target("delivery", "an e-mail delivery")
async def _delivery(world: PermissionWorld) -> Params:
    return {"delivery_id": str(await world.delivery(failed=False))}


@target("failed_delivery", "a failed e-mail delivery")
async def _failed_delivery(world: PermissionWorld) -> Params:
    return {"delivery_id": str(await world.delivery(failed=True))}


@target("retention_request", "the request's deadline and purges")
async def _retention_request(world: PermissionWorld) -> Params:
    return {"request_id": world.authorities["main_request"]}


# -- bodies and query strings, per route ---------------------------------------------------------------


def _json(value: Callable[[PermissionWorld, Params], Any]) -> Callable[[PermissionWorld, Params, Call], None]:
    def fill(world: PermissionWorld, params: Params, call: Call) -> None:
        call.json = value(world, params)

    return fill


def _query(value: Callable[[PermissionWorld, Params], Any]) -> Callable[[PermissionWorld, Params, Call], None]:
    def fill(world: PermissionWorld, params: Params, call: Call) -> None:
        call.params = value(world, params)

    return fill


def _upload(world: PermissionWorld, params: Params, call: Call) -> None:
    call.files = {"file": ("decision.pdf", PDF, "application/pdf")}


def _new_user_body(world: PermissionWorld, params: Params) -> Any:
    email = f"new.{uuid.uuid4().hex[:8]}@cmcluj.example.ro"
    return {"name": "New colleague", "email": email, "language": "ro"}


BODIES: dict[tuple[str, str, str], Callable[[PermissionWorld, Params, Call], None]] = {
    ("registry", "POST", "/_dev/clock"): _json(lambda w, p: {"advance": "P1D"}),
    ("exchange", "POST", "/_dev/clock"): _json(lambda w, p: {"advance": "P1D"}),
    ("notifier", "POST", "/_dev/clock"): _json(lambda w, p: {"advance": "P1D"}),
    ("retention", "POST", "/_dev/clock"): _json(lambda w, p: {"advance": "P1D"}),
    ("registry", "POST", "/auth/login"): _json(
        lambda w, p: {"username": f"nobody.{uuid.uuid4().hex[:8]}", "password": "not-the-password"}
    ),
    ("registry", "POST", "/auth/login/code"): _json(
        lambda w, p: {"challenge_id": "x" * 20, "digits": {"1": "1", "5": "2", "9": "3"}}
    ),
    ("registry", "POST", "/auth/setup"): _json(
        lambda w, p: {"setup_token": "x" * 20, "new_password": "A-long-enough-passw0rd!", "security_code": "1" * 12}
    ),
    ("registry", "POST", "/auth/refresh"): _json(lambda w, p: {"refresh_token": "x" * 20}),
    ("registry", "POST", "/auth/logout"): _json(lambda w, p: {"refresh_token": "x" * 20}),
    ("registry", "POST", "/registrations"): _json(
        lambda w, p: {"token": p["token"], "authority": college(f"Invited {uuid.uuid4().hex[:6]}")}
    ),
    ("registry", "GET", "/coordinators"): _query(lambda w, p: {"country": "RO"}),
    ("registry", "POST", "/authorities"): _json(lambda w, p: college(f"Colegiul Arad {uuid.uuid4().hex[:6]}")),
    ("registry", "PATCH", "/authorities/{authority_id}"): _json(lambda w, p: {"phone": "+40 264 111 111"}),
    ("registry", "PUT", "/authorities/{authority_id}/official-name"): _json(
        lambda w, p: {"official_name": "Colegiul Medicilor Cluj"}
    ),
    ("registry", "PUT", "/authorities/{authority_id}/translations/{language}"): _json(
        lambda w, p: {"informal_name": "Regional college of physicians of Cluj"}
    ),
    ("registry", "POST", "/authorities/{authority_id}/areas"): _json(lambda w, p: {"area": SERVICES_AREA}),
    ("registry", "POST", "/authorities/{authority_id}/links"): _json(lambda w, p: {"linked_authority_id": p["other"]}),
    ("registry", "PUT", "/authorities/{authority_id}/request-coordinators"): _json(
        lambda w, p: {"area": PQ, "coordinator_id": w.authorities["ro_coordinator"], "full_view": True}
    ),
    ("registry", "POST", "/authorities/{authority_id}/users"): _json(_new_user_body),
    ("registry", "PUT", "/coordinators/{coordinator_id}/settings/{area}"): _json(
        lambda w, p: {"referral": "yes", "approve_requests": True, "approve_replies": True}
    ),
    ("registry", "POST", "/invitations"): _json(lambda w, p: {"email": f"inv.{uuid.uuid4().hex[:8]}@example.ro"}),
    ("registry", "PATCH", "/users/{user_id}"): _json(lambda w, p: {"phone": "+40 264 222 222"}),
    ("registry", "PUT", "/users/{user_id}/roles"): _json(
        lambda w, p: {"roles": [{"role": "request_handler", "area": PQ}, {"role": "allocator", "area": PQ}]}
    ),
    ("exchange", "GET", "/requests"): _query(lambda w, p: {"box": "received", "authority_id": p["authority_id"]}),
    ("exchange", "POST", "/requests"): _json(lambda w, p: w.draft_body("ie_agency")),
    ("exchange", "PATCH", "/requests/{request_id}"): _json(lambda w, p: {"reply_date": "2026-04-15"}),
    ("exchange", "POST", "/requests/{request_id}/reject"): _json(lambda w, p: {"comment": "Not like this."}),
    ("exchange", "POST", "/requests/{request_id}/withdraw"): _json(lambda w, p: {"comment": "No longer needed."}),
    ("exchange", "POST", "/requests/{request_id}/allocate"): _json(lambda w, p: {"user_id": w.users[Actor.handler]}),
    ("exchange", "POST", "/requests/{request_id}/forward"): _json(
        lambda w, p: {"authority_id": w.authorities["ro_other"], "comment": "Theirs."}
    ),
    ("exchange", "POST", "/requests/{request_id}/forward-questions"): _json(
        lambda w, p: {"authority_id": w.authorities["ro_other"], "question_ids": ["pq.diploma.authentic"]}
    ),
    ("exchange", "POST", "/requests/{request_id}/reply-date/proposal"): _json(
        lambda w, p: {"reply_date": "2026-05-01", "comment": "We need more time."}
    ),
    ("exchange", "POST", "/requests/{request_id}/reply-date/answer"): _json(lambda w, p: {"agree": True}),
    ("exchange", "PUT", "/requests/{request_id}/answers"): _json(lambda w, p: {"answers": ANSWERS}),
    ("exchange", "POST", "/requests/{request_id}/reply"): _json(lambda w, p: {}),
    ("exchange", "POST", "/requests/{request_id}/reply/reject"): _json(lambda w, p: {"comment": "Incomplete."}),
    ("exchange", "POST", "/requests/{request_id}/close"): _json(lambda w, p: {}),
    ("exchange", "POST", "/requests/{request_id}/additional-information"): _json(lambda w, p: {"comment": "More?"}),
    ("exchange", "POST", "/requests/{request_id}/additional-information/refusal"): _json(
        lambda w, p: {"comment": "No."}
    ),
    ("exchange", "POST", "/requests/{request_id}/referral"): _json(lambda w, p: {}),
    ("exchange", "POST", "/requests/{request_id}/referral/opinion"): _json(lambda w, p: {"comment": "Agreed."}),
    ("exchange", "POST", "/requests/{request_id}/reopen"): _json(lambda w, p: {"comment": "Reopened."}),
    ("exchange", "POST", "/requests/{request_id}/comments"): _json(lambda w, p: {"comment": "A note."}),
    ("exchange", "POST", "/requests/{request_id}/attachments"): _upload,
    ("retention", "GET", "/retention/purges/upcoming"): _query(lambda w, p: {"within": "P30D"}),
}


# -- building the world -----------------------------------------------------------------------------


def _irish(name: str) -> dict[str, Any]:
    return college(
        name,
        country="IE",
        level="national",
        region=None,
        language="en",
        informal_name=name,
        profile="Recognition of professional qualifications.",
        emails=[f"office.{uuid.uuid4().hex[:6]}@example.ie"],
        languages=["en"],
        first_user={"name": f"First user of {name}", "email": f"first.{uuid.uuid4().hex[:6]}@example.ie",
                    "language": "en"},
    )  # fmt: skip


async def _serve(stack: AsyncExitStack, name: str, app: FastAPI) -> Service:
    await stack.enter_async_context(app.router.lifespan_context(app))
    clients = {}
    # The registry limits login attempts per client address: each actor calls from its own.
    for number, who in enumerate(["setup", *Actor], start=1):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(f"192.0.2.{number}", 50000))
        client = httpx.AsyncClient(transport=transport, base_url=f"http://{name}")
        clients[str(who)] = await stack.enter_async_context(client)
    return Service(app, clients.pop("setup"), clients)


async def _start(service: str, settings: Settings, tokens: ActorTokens) -> FastAPI:
    await upgrade(load_definition(service).migrations, settings.database_url(service))
    return create_app(
        service, settings, clock=FrozenClock(START), transport=MemoryTransport(MemoryBroker()), verifier=tokens
    )


@asynccontextmanager
async def permission_world(data_dir: Path) -> AsyncIterator[PermissionWorld]:
    """The four services with every actor of the matrix, and the requests the rows read."""
    smtp = SmtpServer()
    settings = Settings(
        data_dir=data_dir,
        outbox_poll_interval=30,  # the relays are woken after each commit; polling only costs time here
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from="IMI <no-reply@imi.example.eu>",
        public_url="https://imi.example.eu",
    )
    tokens = ActorTokens()
    async with AsyncExitStack() as stack:
        smtp.start()
        stack.callback(smtp.stop)
        registry_app, clock, broker = await start_registry(settings, memory=True, verifier=tokens)
        registry = await _serve(stack, "registry", registry_app)
        registry_world = await build_world(RegistryUnderTest(registry_app, registry.client, clock, broker))
        services = {"registry": registry}
        for name in ("exchange", "retention"):
            services[name] = await _serve(stack, name, await _start(name, settings, tokens))
        notifier_app = await _start("notifier", settings, tokens)
        configure(notifier_app.state.runtime, notifier_settings())
        services["notifier"] = await _serve(stack, "notifier", notifier_app)

        world = PermissionWorld(services, tokens, registry_world)
        world.authorities.update(registry_world.authorities)
        await _set_up_registry(world)
        await _sign_tokens(world)
        await world.feed("registry", "exchange")
        await world.feed("registry", "notifier")
        await _set_up_requests(world)
        await world.feed("exchange", "notifier")
        await world.feed("exchange", "retention")
        yield world


async def _set_up_registry(world: PermissionWorld) -> None:
    ids = world.registry_world.ids
    college_id = world.authorities["college"]
    await world.registry_ok("POST", f"/authorities/{college_id}/areas", "ro_coordinator", json={"area": SERVICES_AREA})
    cluj = await world.registry_ok(
        "POST",
        "/authorities",
        "ro_coordinator",
        json=college("Coordonatorul IMI Cluj", kind="delegated_coordinator", areas=[PQ, SERVICES_AREA]),
    )
    world.authorities["cluj_coordinator"] = cluj["authority"]["id"]
    await world.registry_ok("POST", f"/authorities/{cluj['authority']['id']}/validate", "ro_coordinator")
    world.authorities["ro_other"] = await world.new_authority("Colegiul Medicilor Timis", region="Timis")

    world.users.update(
        {
            Actor.basic: ids["basic"],
            Actor.handler: ids["handler"],
            Actor.other_area: await world.new_colleague("other.area", [{"role": "request_handler",
                                                                         "area": SERVICES_AREA}]),
            Actor.allocator: await world.new_colleague("allocator.only", [{"role": "allocator", "area": PQ}]),
            Actor.lda: await world.new_colleague("lda", [{"role": "local_data_administrator"}]),
            Actor.linked: ids["national_college_first_user"],
            Actor.coord_full: ids["ro_coordinator"],
            Actor.coord_overview: cluj["first_user"]["id"],
            Actor.commission: ids["commission"],
        }
    )  # fmt: skip
    # Rule S8: with allocation on, every area needs an allocator.
    await world.new_colleague("services.allocator", [{"role": "allocator", "area": SERVICES_AREA}])
    for coordinator, full_view in (("ro_coordinator", True), ("cluj_coordinator", False)):
        await world.registry_ok(
            "PUT",
            f"/authorities/{college_id}/request-coordinators",
            "college_first_user",
            json={"area": PQ, "coordinator_id": world.authorities[coordinator], "full_view": full_view},
        )
    await world.registry_ok(
        "POST",
        f"/authorities/{college_id}/links",
        "college_first_user",
        json={"linked_authority_id": world.authorities["national_college"]},
    )
    await world.registry_ok(
        "PATCH", f"/authorities/{college_id}", "college_first_user", json={"allocation_enabled": True}
    )
    await world.registry_ok(
        "PUT",
        f"/coordinators/{world.authorities['ro_coordinator']}/settings/{PQ}",
        "ro_coordinator",
        json={"referral": "yes", "approve_requests": True, "approve_replies": True},
    )
    for name, user in (("ie_council", Actor.other_country), ("ie_agency", "ie_agency_user")):
        created = await world.registry_ok("POST", "/authorities", "ie_coordinator", json=_irish(name))
        world.authorities[name] = created["authority"]["id"]
        await world.registry_ok("POST", f"/authorities/{world.authorities[name]}/validate", "ie_coordinator")
        world.users[user] = created["first_user"]["id"]


async def _sign_tokens(world: PermissionWorld) -> None:
    """Each actor's token: the claims the registry signs for that user (services.registry.tokens)."""
    async with world.services["registry"].runtime.sessions() as session:
        for name, user_id in world.users.items():
            user = await session.scalar(
                select(User).where(User.id == uuid.UUID(user_id)).options(selectinload(User.roles))
            )
            assert user is not None
            authority = await session.get(Authority, user.authority_id)
            assert authority is not None
            world.tokens.principals[str(name)] = Principal.model_validate(access_claims(user, authority))


async def _set_up_requests(world: PermissionWorld) -> None:
    """The Irish council's request to the college, in progress, with personal data everywhere (subject,
    a personal-data answer, free text, an attachment); another Irish authority's request."""
    request_id = await world.in_progress()
    uploaded = await world.exchange_ok(
        "POST",
        f"/requests/{request_id}/attachments",
        Actor.handler,
        files={"file": ("decision.pdf", PDF, "application/pdf")},
    )
    await world.exchange_ok("PUT", f"/requests/{request_id}/answers", Actor.handler, json={"answers": ANSWERS})
    await world.exchange_ok(
        "POST", f"/requests/{request_id}/comments", Actor.other_country, json={"comment": f"Note: {FREE_TEXT}"}
    )
    world.authorities["main_request"] = request_id
    world.authorities["main_attachment"] = uploaded["id"]
    world.authorities["other_request"] = await world.sent_to_college("ie_agency_user")


async def _delivery_id(world: PermissionWorld, *, failed: bool) -> int:
    runtime = world.services["notifier"].runtime
    async with runtime.sessions() as session, session.begin():
        row = await session.scalar(select(Delivery).order_by(Delivery.id.desc()))
        assert row is not None, "the notifier made no deliveries from the events it was fed"
        if failed:
            await session.execute(update(Delivery).where(Delivery.id == row.id).values(status="failed"))
        return int(row.id)
