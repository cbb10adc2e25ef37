"""The small world the HTTP benchmarks run in: competent authorities in several countries, a national
coordinator per country, request handlers with access tokens, and the registry events that describe
them. The exchange's and the notifier's read models are fed with those events through each service's
own consumer code (``Messaging.process``: inbox and handlers), as ``tests/exchange/world.py`` does,
before the services start."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.infra import Tokens
from services import load_definition
from shared.auth import InvalidToken, Principal
from shared.contracts.registry import (
    AUTHORITY_UPDATED,
    USER_UPDATED,
    AuthorityState,
    CoordinatorAreaSettings,
    RequestCoordinatorState,
    RoleState,
    UserState,
)
from shared.events.envelope import Envelope
from shared.service import ServiceRuntime
from shared.settings import Settings

PQ = "professional_qualifications"
COUNTRIES = [
    ("RO", "ro"),
    ("IE", "en"),
    ("DE", "de"),
    ("FR", "fr"),
    ("PL", "pl"),
    ("ES", "es"),
    ("IT", "it"),
    ("FI", "fi"),
]
QUESTIONS = ["pq.identity.document_matches", "pq.diploma.authentic", "pq.sanctions.any"]


@dataclass
class WorldAuthority:
    id: uuid.UUID
    name: str
    country: str
    language: str
    kind: str
    coordinator_id: uuid.UUID | None = None
    emails: list[str] = field(default_factory=list)


@dataclass
class WorldUser:
    id: uuid.UUID
    authority: WorldAuthority
    roles: list[str]
    token: str = ""

    @property
    def email(self) -> str:
        return f"user-{self.id.hex[:12]}@{self.authority.country.lower()}.example.eu"


@dataclass
class World:
    authorities: list[WorldAuthority]
    users: list[WorldUser]

    @property
    def competent(self) -> list[WorldAuthority]:
        return [a for a in self.authorities if a.kind == "competent_authority"]

    def handlers_of(self, authority: WorldAuthority) -> list[WorldUser]:
        return [u for u in self.users if u.authority.id == authority.id and "request_handler" in u.roles]

    def requesters(self) -> list[WorldUser]:
        """One request handler per competent authority, in a fixed order."""
        seen: set[uuid.UUID] = set()
        found = []
        for user in self.users:
            if user.authority.kind == "competent_authority" and user.authority.id not in seen:
                seen.add(user.authority.id)
                found.append(user)
        return found

    def envelopes(self) -> list[Envelope]:
        now = datetime.now(UTC)
        out = []
        for authority in self.authorities:
            coordinator = authority.kind != "competent_authority"
            state = AuthorityState(
                id=authority.id,
                version=1,
                kind=authority.kind,
                country=authority.country,
                level="national",
                region=None,
                official_name=f"{authority.name} (official)",
                language=authority.language,
                informal_name=authority.name,
                profile="",
                status="active",
                emails=authority.emails,
                languages=[],
                areas=[PQ],
                keywords={},
                allocation_enabled=False,
                links=[],
                request_coordinators=[]
                if coordinator or authority.coordinator_id is None
                else [RequestCoordinatorState(area=PQ, coordinator_id=authority.coordinator_id, full_view=False)],
                coordinator_settings=[
                    CoordinatorAreaSettings(area=PQ, referral="yes", approve_requests=False, approve_replies=False)
                ]
                if coordinator
                else [],
                updated_at=now,
            )
            out.append(_envelope(AUTHORITY_UPDATED.name, state))
        for user in self.users:
            user_state = UserState(
                id=user.id,
                version=1,
                authority_id=user.authority.id,
                name=f"User {user.id.hex[:6]}",
                email=user.email,
                language=user.authority.language,
                status="active",
                digest=False,
                roles=[RoleState(role=role, area=PQ) for role in user.roles],
                updated_at=now,
            )
            out.append(_envelope(USER_UPDATED.name, user_state))
        return out


def _envelope(event_type: str, data: Any) -> Envelope:
    return Envelope(
        type=event_type,
        occurred_at=datetime.now(UTC),
        producer="registry",
        correlation_id="bench",
        data=data.model_dump(mode="json"),
    )


def build_world(tokens: Tokens, *, authorities_per_country: int, handlers_per_authority: int, seed: int = 8) -> World:
    rng = random.Random(seed)
    authorities: list[WorldAuthority] = []
    users: list[WorldUser] = []
    for country, language in COUNTRIES:
        coordinator = WorldAuthority(
            uuid.UUID(int=rng.getrandbits(128)), f"{country} coordinator", country, language, "national_coordinator"
        )
        coordinator.emails = [f"coordinator@{country.lower()}.example.eu"]
        authorities.append(coordinator)
        users.append(
            WorldUser(uuid.UUID(int=rng.getrandbits(128)), coordinator, ["request_handler", "data_administrator"])
        )
        for n in range(authorities_per_country):
            authority = WorldAuthority(
                uuid.UUID(int=rng.getrandbits(128)),
                f"{country} authority {n + 1}",
                country,
                language,
                "competent_authority",
                coordinator_id=coordinator.id,
            )
            authority.emails = [f"office-{authority.id.hex[:8]}@{country.lower()}.example.eu"]
            authorities.append(authority)
            for _ in range(handlers_per_authority):
                users.append(WorldUser(uuid.UUID(int=rng.getrandbits(128)), authority, ["request_handler"]))
    for user in users:
        user.token = tokens.sign(
            user_id=user.id,
            authority_id=user.authority.id,
            country=user.authority.country,
            language=user.authority.language,
            roles={PQ: user.roles},
        )
    return World(authorities, users)


class _NoTokens:
    async def verify(self, token: str) -> Principal:
        raise InvalidToken("not serving requests")


async def prefeed(service: str, settings: Settings, world: World) -> int:
    """Hand the world's registry events to ``service``'s own consumer code, in its database."""
    runtime = ServiceRuntime(load_definition(service), settings, verifier=_NoTokens())
    try:
        handled = 0
        for envelope in world.envelopes():
            if await runtime.messaging.process(envelope, runtime.definition.handlers):
                handled += 1
        return handled
    finally:
        await runtime.engine.dispose()


def draft_body(rng: random.Random, responder: WorldAuthority, reply_in_days: int = 30) -> dict[str, Any]:
    """A request as a handler writes it: three questions, the professional's data, a comment."""
    return {
        "area": PQ,
        "responding_authority_id": str(responder.id),
        "question_ids": QUESTIONS,
        "subject": {
            "family_name": rng.choice(["Murphy", "Popescu", "Schmidt", "Dubois", "Kowalski", "García", "Rossi"]),
            "given_names": rng.choice(["Siobhan", "Andrei", "Anna", "Marie", "Jan", "Lucía", "Marco"]),
            "date_of_birth": f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            "profession": "doctor",
        },
        "reply_date": (date.today() + timedelta(days=reply_in_days)).isoformat(),
        "comment": "Please confirm that this doctor's diploma is authentic and that no sanction applies.",
    }


def pick_responder(rng: random.Random, world: World, requester: WorldUser) -> WorldAuthority:
    others = [a for a in world.competent if a.country != requester.authority.country]
    return rng.choice(others)
