"""The four services as the fuzz tests see them: each on its embedded default (a migrated SQLite
file in a temporary folder, the in-process broker), a frozen clock, a little data so that routes
are reached beyond "not found", and one bearer token of a user with broad roles.

The registry checks its own signed tokens (its real :class:`LocalTokenVerifier`), so its token is a
real one for the first user of Romania's national coordinator, who holds every role a coordinator
can hold. The other services read tokens with :class:`BroadTokens`: the fuzzing user holds every
role in every legislative area and every authority-wide role.

:meth:`Target.seed` puts data in through each service's own consumer code (registry events for the
exchange's and the notifier's read models, exchange events for the retention service), its domain
code (the registry's bootstrap) and its HTTP API, and records the ids it created (``Target.ids``,
by path parameter name) so that fuzzed calls can name things that exist.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from starlette.types import Receive, Scope, Send

from services import create_app, load_definition
from shared.auth import InvalidToken, Principal
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.clock import FrozenClock
from shared.contracts.exchange import REQUEST_CLOSED, REQUEST_DRAFTED, REQUEST_RECEIVED, RequestChange
from shared.contracts.registry import (
    AUTHORITY_UPDATED,
    USER_LOCKED,
    USER_UPDATED,
    AuthorityState,
    CoordinatorAreaSettings,
    RequestCoordinatorState,
    RoleState,
    UserLocked,
    UserState,
)
from shared.events.envelope import Contract, Envelope, EventData
from shared.migrations import upgrade
from shared.service import ServiceRuntime
from shared.settings import Settings

SERVICES = ("registry", "exchange", "notifier", "retention")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AREAS = ("professional_qualifications", "services")
PQ = AREAS[0]
TOKEN = "fuzz-broad-roles"
PER_AREA_ROLES = ["request_handler", "allocator", "referral_user", "data_administrator"]
AUTHORITY_ROLES = ["commission", "coordinator", "local_data_administrator", "translator"]


# The ids the last seeding of each service created, by path parameter name (read by the fuzzer's
# generation hooks, which run outside any fixture).
SEEDED_IDS: dict[str, dict[str, list[str]]] = {}


class BroadTokens:
    """Bearer token -> principal. :data:`TOKEN` is the fuzzing user, who holds every role in every
    legislative area and every authority-wide role; the seeding adds the users it acts as."""

    def __init__(self) -> None:
        self.principals: dict[str, Principal] = {}

    def add(self, token: str, user_id: uuid.UUID, authority_id: uuid.UUID, country: str, *, broad: bool) -> None:
        self.principals[token] = Principal.model_validate(
            {
                "sub": str(user_id),
                "authority": str(authority_id),
                "country": country,
                "language": "en",
                "roles": {area: PER_AREA_ROLES if broad else ["request_handler"] for area in AREAS},
                "authority_roles": AUTHORITY_ROLES if broad else [],
            }
        )

    async def verify(self, token: str) -> Principal:
        if token not in self.principals:
            raise InvalidToken("unknown test token")
        return self.principals[token]


class StartedOnce:
    """The app as schemathesis reaches it (ASGI): started on the first lifespan schemathesis begins
    and kept running through the start-stop cycles its pytest plugin makes around every test, until
    :meth:`close`. A service is started once, as in production, and a whole module's tests share it.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._running: AsyncExitStack | None = None
        self._closing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await receive()  # lifespan.startup
        if self._running is None and not self._closing:
            running = AsyncExitStack()
            await running.enter_async_context(self.app.router.lifespan_context(self.app))
            self._running = running
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        if self._closing and self._running is not None:
            await self._running.aclose()
            self._running = None
        await send({"type": "lifespan.shutdown.complete"})

    def close(self) -> None:
        """Stop the app, in schemathesis's event loop (where it runs), through one last lifespan."""
        from schemathesis.python import asgi

        self._closing = True
        with asgi.get_client(cast(Any, self)):  # an ASGI app, typed with starlette's mappings
            pass
        asgi.shutdown_lifespans()


@dataclass
class Target:
    """A built (not yet started) service, the bearer token that reaches its routes, and, once
    :meth:`seed` ran, the ids of what the seeding created, by path parameter name."""

    name: str
    app: FastAPI
    clock: FrozenClock
    token: str = TOKEN
    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @cached_property
    def started_once(self) -> StartedOnce:
        return StartedOnce(self.app)

    async def seed(self) -> None:
        """Migrate the database and put the service's data in: first through its own consumer or
        domain code, then over HTTP with the service started (and stopped again, so that it can be
        started on any event loop afterwards)."""
        runtime = self.runtime
        await upgrade(load_definition(self.name).migrations, runtime.settings.database_url(self.name))
        await SEEDS[self.name](self)
        await runtime.engine.dispose()  # nothing pooled stays bound to the seeding loop
        SEEDED_IDS[self.name] = self.ids

    @asynccontextmanager
    async def started(self) -> AsyncIterator[httpx.AsyncClient]:
        async with self.app.router.lifespan_context(self.app):
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url=f"http://{self.name}") as client:
                yield client


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    # Nothing listens on port 9 (discard): the notifier's sender finds no SMTP server, which is
    # what it must survive anyway; the fuzz tests read its API, they do not send mail.
    values: dict[str, Any] = {
        "outbox_poll_interval": 0.2,
        "retention_scan_interval": 3600,
        "smtp_host": "127.0.0.1",
        "smtp_port": 9,
        **overrides,
    }
    return Settings(data_dir=data_dir, **values)


def build(name: str, data_dir: Path, **overrides: Any) -> Target:
    """The service ``name`` on SQLite in ``data_dir`` with the memory broker and a frozen clock
    (the registry with its own token verifier, the others with :class:`BroadTokens`); ``overrides``
    are settings other than the defaults."""
    settings = settings_for(data_dir, **overrides)
    clock = FrozenClock(START)
    transport = MemoryTransport(MemoryBroker())
    verifier = None if name == "registry" else BroadTokens()
    app = create_app(name, settings, clock=clock, transport=transport, verifier=verifier)
    return Target(name, app, clock)


def _tokens(target: Target) -> BroadTokens:
    verifier = target.runtime.verifier
    assert isinstance(verifier, BroadTokens)
    return verifier


def _envelope(contract: Contract[Any], data: EventData, at: datetime) -> Envelope:
    return Envelope(
        type=contract.name,
        occurred_at=at,
        producer=contract.name.split(".", 1)[0],
        correlation_id="fuzz",
        data=data.model_dump(mode="json"),
    )


async def _deliver(target: Target, contract: Contract[Any], data: EventData) -> None:
    runtime = target.runtime
    envelope = _envelope(contract, data, target.clock.now())
    await runtime.messaging.process(envelope, runtime.definition.handlers)


def _authority(target: Target, name: str, country: str, kind: str, **extra: Any) -> AuthorityState:
    fields: dict[str, Any] = {
        "id": uuid.uuid5(uuid.NAMESPACE_URL, f"fuzz:{name}"),
        "version": 1,
        "kind": kind,
        "country": country,
        "level": "national",
        "region": None,
        "official_name": f"{name} official",
        "language": {"RO": "ro", "IE": "en"}[country],
        "informal_name": name,
        "profile": "",
        "status": "active",
        "emails": [f"{name.replace(' ', '.')}@example.org"],
        "languages": [],
        "areas": list(AREAS),
        "keywords": {},
        "allocation_enabled": False,
        "links": [],
        "request_coordinators": [],
        "coordinator_settings": [
            CoordinatorAreaSettings(area=area, referral="yes", approve_requests=False, approve_replies=False)
            for area in AREAS
        ]
        if kind != "competent_authority"
        else [],
        "updated_at": target.clock.now(),
    }
    return AuthorityState(**{**fields, **extra})


def _user(target: Target, name: str, authority_id: uuid.UUID, roles: list[str]) -> UserState:
    return UserState(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"fuzz:{name}"),
        version=1,
        authority_id=authority_id,
        name=name,
        email=f"{name.replace(' ', '.')}@example.org",
        language="en",
        status="active",
        digest=False,
        roles=[RoleState(role=role, area=area) for area in AREAS for role in roles],
        updated_at=target.clock.now(),
    )


async def _read_model(target: Target) -> tuple[UserState, UserState]:
    """A Romanian coordinator and college, an Irish council, and a user of each authority; the
    fuzzing user is the college's (``TOKEN``), the Irish handler's token is ``seed-ie``."""
    coordinator = _authority(target, "ro coordinator", "RO", "national_coordinator")
    college = _authority(
        target,
        "ro college",
        "RO",
        "competent_authority",
        request_coordinators=[RequestCoordinatorState(area=PQ, coordinator_id=coordinator.id, full_view=True)],
    )
    council = _authority(target, "ie council", "IE", "competent_authority")
    for authority in (coordinator, college, council):
        await _deliver(target, AUTHORITY_UPDATED, authority)
    fuzz_user = _user(target, "fuzz user", college.id, ["request_handler", "allocator", "referral_user"])
    ie_handler = _user(target, "ie handler", council.id, ["request_handler"])
    coordinator_user = _user(target, "ro coordinator user", coordinator.id, ["request_handler", "data_administrator"])
    for user in (fuzz_user, ie_handler, coordinator_user):
        await _deliver(target, USER_UPDATED, user)
    tokens = _tokens(target)
    tokens.add(TOKEN, fuzz_user.id, college.id, "RO", broad=True)
    tokens.add("seed-ie", ie_handler.id, council.id, "IE", broad=False)
    target.ids["user_id"] = [str(fuzz_user.id), str(ie_handler.id)]
    target.ids["authority_id"] = [str(college.id), str(council.id)]
    return fuzz_user, ie_handler


def draft_body(responding_authority_id: uuid.UUID, family_name: str) -> dict[str, Any]:
    return {
        "area": PQ,
        "responding_authority_id": str(responding_authority_id),
        "question_ids": ["pq.identity.document_matches", "pq.diploma.authentic", "pq.sanctions.any"],
        "subject": {
            "family_name": family_name,
            "given_names": "Siobhan",
            "date_of_birth": "1980-05-17",
            "profession": "doctor",
        },
        "reply_date": "2026-04-01",
        "comment": "Please check the diploma of this doctor.",
    }


async def _seed_exchange(target: Target) -> None:
    """The read model; a request the Irish council sent to the college (the fuzzing user may
    accept, answer, refuse… it) and a draft of the college's to the council."""
    await _read_model(target)
    college, council = (uuid.UUID(i) for i in target.ids["authority_id"])
    async with target.started() as client:
        ie = {"Authorization": "Bearer seed-ie"}
        received = await client.post("/requests", json=draft_body(college, "Murphy"), headers=ie)
        assert received.status_code == 201, received.text
        received_id = received.json()["id"]
        sent = await client.post(f"/requests/{received_id}/send", headers=ie)
        assert sent.status_code == 200, sent.text
        draft = await client.post("/requests", json=draft_body(council, "Popescu"), headers=target.headers)
        assert draft.status_code == 201, draft.text
    target.ids["request_id"] = [received_id, draft.json()["id"]]


async def _seed_notifier(target: Target) -> None:
    """The read model, and an alert waiting to go out: the fuzzing user's account was locked."""
    fuzz_user, _ = await _read_model(target)
    await _deliver(target, USER_LOCKED, UserLocked(user_id=fuzz_user.id, authority_id=fuzz_user.authority_id))
    target.ids["delivery_id"] = ["1"]


def _request_change(request_id: uuid.UUID, state: str, version: int, at: datetime, **extra: Any) -> RequestChange:
    return RequestChange(
        request_id=request_id,
        reference=f"REQ-2026-{version:06d}",
        area=PQ,
        state=state,
        previous_state=None,
        requesting_authority_id=uuid.UUID(int=1),
        responding_authority_id=uuid.UUID(int=2),
        requester_user_id=uuid.UUID(int=3),
        allocated_user_id=None,
        reply_date=None,
        actor_user_id=None,
        actor_authority_id=None,
        occurred_at=at,
        version=version,
        **extra,
    )


async def _seed_retention(target: Target) -> None:
    """A draft, a received request and one closed long ago (its purge is due)."""
    tokens = _tokens(target)
    tokens.add(TOKEN, uuid.uuid4(), uuid.uuid4(), "BE", broad=True)
    now = target.clock.now()
    closed = now - timedelta(days=400)
    requests = [uuid.uuid5(uuid.NAMESPACE_URL, f"fuzz:request:{n}") for n in range(3)]
    await _deliver(target, REQUEST_DRAFTED, _request_change(requests[0], "draft", 1, now))
    await _deliver(target, REQUEST_RECEIVED, _request_change(requests[1], "awaiting_acceptance", 1, now))
    await _deliver(target, REQUEST_CLOSED, _request_change(requests[2], "closed", 1, closed, closed_at=closed))
    target.ids["request_id"] = [str(r) for r in requests]


def college_body() -> dict[str, Any]:
    return {
        "country": "RO",
        "level": "regional",
        "region": "Cluj",
        "official_name": "Colegiul Medicilor Cluj",
        "language": "ro",
        "informal_name": "Colegiul regional al medicilor din Cluj",
        "profile": "Recunoașterea calificărilor profesionale ale medicilor din regiunea Cluj.",
        "emails": ["office@cmcluj.example.ro"],
        "languages": ["ro", "en"],
        "areas": [PQ],
        "keywords": {"economic_activities": ["Q"], "policy_areas": [], "areas": {PQ: ["doctor_of_medicine"]}},
        "first_user": {"name": "Ana Pop", "email": "ana.pop@cmcluj.example.ro", "language": "ro"},
    }


async def _seed_registry(target: Target) -> None:
    """The Commission and the national coordinators of Romania and Ireland (bootstrap), a real
    token for Romania's first user, and a college that coordinator registered and validated."""
    from services.registry.bootstrap import CoordinatorSpec, bootstrap
    from services.registry.models import Authority, User
    from services.registry.tokens import issue_access_token

    runtime = target.runtime
    async with runtime.messaging.transaction() as uow:
        await bootstrap(
            uow,
            runtime.settings,
            commission_email="helpdesk@ec.example.eu",
            coordinators=[CoordinatorSpec("RO", "coord@anpc.example.ro"), CoordinatorSpec("IE", "imi@gov.example.ie")],
        )
    async with runtime.messaging.transaction() as uow:
        user = await uow.session.scalar(select(User).where(User.email == "coord@anpc.example.ro"))
        assert user is not None
        authority = await uow.session.get(Authority, user.authority_id)
        assert authority is not None
        # Valid for a day of the frozen clock: the fuzz run never sees it expire.
        target.token = issue_access_token(runtime.settings, user, authority, target.clock.now(), timedelta(days=1))
        coordinator_user, coordinator = str(user.id), str(authority.id)
    async with target.started() as client:
        created = await client.post("/authorities", json=college_body(), headers=target.headers)
        assert created.status_code == 201, created.text
        college = created.json()["authority"]["id"]
        validated = await client.post(f"/authorities/{college}/validate", headers=target.headers)
        assert validated.status_code == 200, validated.text
        college_user = created.json()["first_user"]["id"]
    target.ids.update(
        authority_id=[college, coordinator],
        linked_authority_id=[college],
        coordinator_id=[coordinator],
        user_id=[coordinator_user, college_user],
    )


SEEDS: dict[str, Callable[[Target], Awaitable[None]]] = {
    "registry": _seed_registry,
    "exchange": _seed_exchange,
    "notifier": _seed_notifier,
    "retention": _seed_retention,
}
