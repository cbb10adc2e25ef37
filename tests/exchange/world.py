"""An exchange service with a small world in its read model: an Irish council that asks, a Romanian
college that answers, their coordinators, a linked authority, another Romanian authority to
forward to, and a Finnish stranger. The registry's side arrives as real registry events through the
exchange's own consumer code (inbox and handlers); tokens map to principals like the registry's."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from services import create_app, load_definition
from services.exchange.models import messaging
from shared.auth import InvalidToken, Principal
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.clock import FrozenClock
from shared.contracts.registry import (
    AUTHORITY_UPDATED,
    USER_UPDATED,
    AuthorityState,
    CoordinatorAreaSettings,
    RequestCoordinatorState,
    RoleState,
    UserState,
)
from shared.events.envelope import Contract, Envelope, EventData
from shared.migrations import upgrade
from shared.service import ServiceRuntime
from shared.settings import Settings

PQ = "professional_qualifications"
SERVICES = "services"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Tokens:
    """Bearer token -> principal, as the registry would have signed it."""

    def __init__(self) -> None:
        self.principals: dict[str, Principal] = {}

    async def verify(self, token: str) -> Principal:
        if token not in self.principals:
            raise InvalidToken("unknown test token")
        return self.principals[token]


@dataclass
class ExchangeWorld:
    app: Any
    client: httpx.AsyncClient
    clock: FrozenClock
    tokens: Tokens
    authorities: dict[str, uuid.UUID] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    authority_state: dict[str, AuthorityState] = field(default_factory=dict)
    versions: dict[uuid.UUID, int] = field(default_factory=dict)

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    async def deliver(self, contract: Contract[Any], data: EventData, producer: str = "registry") -> None:
        envelope = Envelope(
            type=contract.name,
            occurred_at=self.clock.now(),
            producer=producer,
            correlation_id="test",
            data=data.model_dump(mode="json"),
        )
        await self.runtime.messaging.process(envelope, self.runtime.definition.handlers)

    async def add_authority(
        self,
        name: str,
        country: str,
        *,
        kind: str = "competent_authority",
        coordinators: list[str] = (),  # type: ignore[assignment]
        full_view: bool = False,
        links: list[str] = (),  # type: ignore[assignment]
        allocation: bool = False,
        settings: dict[str, Any] | None = None,
        areas: tuple[str, ...] = (PQ,),
    ) -> None:
        authority_id = self.authorities.setdefault(name, uuid.uuid4())
        self.versions[authority_id] = self.versions.get(authority_id, 0) + 1
        state = AuthorityState(
            id=authority_id,
            version=self.versions[authority_id],
            kind=kind,
            country=country,
            level="national",
            region=None,
            official_name=f"{name} official",
            language={"RO": "ro", "IE": "en", "FI": "fi"}[country],
            informal_name=name,
            profile="",
            status="active",
            emails=[f"{name}@example.org"],
            languages=[],
            areas=list(areas),
            keywords={},
            allocation_enabled=allocation,
            links=[self.authorities[link] for link in links],
            request_coordinators=[
                RequestCoordinatorState(area=PQ, coordinator_id=self.authorities[c], full_view=full_view)
                for c in coordinators
            ],
            coordinator_settings=[
                CoordinatorAreaSettings(
                    area=PQ, **(settings or {"referral": "yes", "approve_requests": False, "approve_replies": False})
                )
            ]
            if kind != "competent_authority"
            else [],
            updated_at=self.clock.now(),
        )
        self.authority_state[name] = state
        await self.deliver(AUTHORITY_UPDATED, state)

    async def add_user(
        self, name: str, authority: str, roles: list[str], language: str, *, areas: tuple[str, ...] = (PQ,)
    ) -> None:
        """A user of ``authority`` with ``roles`` in each of ``areas`` (roles are per legislative area, S9)."""
        user_id = self.users.setdefault(name, uuid.uuid4())
        authority_id = self.authorities[authority]
        state = self.authority_state[authority]
        self.tokens.principals[name] = Principal.model_validate(
            {
                "sub": str(user_id),
                "authority": str(authority_id),
                "country": state.country,
                "language": language,
                "roles": {area: roles for area in areas},
                "authority_roles": [],
            }
        )
        self.versions[user_id] = self.versions.get(user_id, 0) + 1
        await self.deliver(
            USER_UPDATED,
            UserState(
                id=user_id,
                version=self.versions[user_id],
                authority_id=authority_id,
                name=name,
                email=f"{name}@example.org",
                language=language,
                status="active",
                digest=False,
                roles=[RoleState(role=r, area=area) for area in areas for r in roles],
                updated_at=self.clock.now(),
            ),
        )

    async def call(self, method: str, url: str, who: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {who}"} if who else {}
        return await self.client.request(method, url, headers=headers, **kwargs)

    async def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        outbox = messaging.outbox
        async with self.runtime.sessions() as session:
            query = select(outbox.c.payload).order_by(outbox.c.seq)
            if event_type:
                query = query.where(outbox.c.event_type == event_type)
            return [json.loads(p) for p in (await session.scalars(query)).all()]

    async def draft(self, who: str = "ie_handler", **overrides: Any) -> str:
        body = {
            "area": PQ,
            "responding_authority_id": str(self.authorities["ro_college"]),
            "question_ids": ["pq.identity.document_matches", "pq.diploma.authentic", "pq.sanctions.any"],
            "subject": {
                "family_name": "Murphy-Unique-7731",
                "given_names": "Siobhan",
                "date_of_birth": "1980-05-17",
                "profession": "doctor",
            },
            "reply_date": "2026-04-01",
            "comment": "Please check the diploma of this doctor.",
        }
        body.update(overrides)
        response = await self.call("POST", "/requests", who, json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def sent_request(self, **overrides: Any) -> str:
        request_id = await self.draft(**overrides)
        response = await self.call("POST", f"/requests/{request_id}/send", "ie_handler")
        assert response.status_code == 200, response.text
        return request_id

    async def accepted_request(self, **overrides: Any) -> str:
        request_id = await self.sent_request(**overrides)
        response = await self.call("POST", f"/requests/{request_id}/accept", "ro_handler")
        assert response.status_code == 200, response.text
        return request_id

    async def answered_request(self, **overrides: Any) -> str:
        request_id = await self.accepted_request(**overrides)
        await self.answer_all(request_id)
        response = await self.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
        assert response.status_code == 200, response.text
        return request_id

    async def answer_all(self, request_id: str, who: str = "ro_handler") -> None:
        response = await self.call(
            "PUT",
            f"/requests/{request_id}/answers",
            who,
            json={
                "answers": {
                    "pq.identity.document_matches": "yes",
                    "pq.diploma.authentic": "yes",
                    "pq.sanctions.any": "no",
                }
            },
        )
        assert response.status_code == 200, response.text


async def build(settings: Settings, *, broker: MemoryBroker | None = None) -> tuple[Any, FrozenClock, Tokens]:
    await upgrade(load_definition("exchange").migrations, settings.database_url("exchange"))
    clock = FrozenClock(START)
    tokens = Tokens()
    transport = MemoryTransport(broker or MemoryBroker()) if settings.broker_url.startswith("memory") else None
    app = create_app("exchange", settings, clock=clock, transport=transport, verifier=tokens)
    return app, clock, tokens


@asynccontextmanager
async def exchange_world(settings: Settings, **options: Any) -> AsyncIterator[ExchangeWorld]:
    app, clock, tokens = await build(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://exchange") as client:
            world = ExchangeWorld(app, client, clock, tokens)
            await populate(world, **options)
            yield world


async def populate(
    world: ExchangeWorld,
    *,
    allocation: bool = False,
    approvals: bool = False,
    full_view: bool = False,
    referral: str = "yes",
) -> None:
    coordinator = {"referral": referral, "approve_requests": approvals, "approve_replies": approvals}
    await world.add_authority("ro_coordinator", "RO", kind="national_coordinator", settings=coordinator)
    await world.add_authority("ie_coordinator", "IE", kind="national_coordinator", settings=coordinator)
    await world.add_authority("ro_national_college", "RO", coordinators=["ro_coordinator"])
    await world.add_authority(
        "ro_college",
        "RO",
        coordinators=["ro_coordinator"],
        full_view=full_view,
        links=["ro_national_college"],
        allocation=allocation,
    )
    await world.add_authority("ro_other", "RO", coordinators=["ro_coordinator"])
    await world.add_authority("ie_council", "IE", coordinators=["ie_coordinator"])
    await world.add_authority("fi_board", "FI")
    await world.add_user("ie_handler", "ie_council", ["request_handler"], "en")
    await world.add_user(
        "ro_handler", "ro_college", ["request_handler", "allocator"] if allocation else ["request_handler"], "ro"
    )
    await world.add_user("ro_handler2", "ro_college", ["request_handler"], "ro")
    await world.add_user("ro_allocator", "ro_college", ["allocator"], "ro")
    await world.add_user("ro_basic", "ro_college", [], "ro")
    await world.add_user("ro_coord_user", "ro_coordinator", ["request_handler", "data_administrator"], "ro")
    await world.add_user("ro_referral_user", "ro_coordinator", ["referral_user"], "ro")
    await world.add_user("ie_coord_user", "ie_coordinator", ["request_handler", "data_administrator"], "en")
    await world.add_user("ro_other_handler", "ro_other", ["request_handler"], "ro")
    await world.add_user("linked_user", "ro_national_college", ["request_handler"], "ro")
    await world.add_user("fi_user", "fi_board", ["request_handler"], "fi")
