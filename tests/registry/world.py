"""A small registry world for tests: the Commission, the national coordinators of Romania and
Ireland, a Romanian regional college of physicians (validated) with colleagues, and the national
college it can be linked to. Tokens here are user ids: the registry reloads every actor from its
own rows, so these tests exercise its rules; tests/registry/test_login.py covers real tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from services.registry.bootstrap import CoordinatorSpec, bootstrap
from services.registry.models import User
from shared.auth import InvalidToken, Principal
from tests.registry.conftest import RegistryUnderTest

PQ = "professional_qualifications"
SERVICES_AREA = "services"


class UserIdTokens:
    """A token verifier for service tests: the bearer token is the user id."""

    async def verify(self, token: str) -> Principal:
        try:
            uuid.UUID(token)
        except ValueError as exc:
            raise InvalidToken("not a user id") from exc
        return Principal.model_validate({"sub": token, "authority": "?", "country": "??"})


def college(name: str = "Colegiul Medicilor Cluj", **overrides: Any) -> dict[str, Any]:
    body = {
        "country": "RO",
        "level": "regional",
        "region": "Cluj",
        "official_name": name,
        "language": "ro",
        "informal_name": "Colegiul regional al medicilor din Cluj",
        "profile": "Recunoașterea calificărilor profesionale ale medicilor din regiunea Cluj.",
        "address": "Str. Avram Iancu 1, Cluj-Napoca",
        "phone": "+40 264 000 000",
        "website": "https://cmcluj.ro",
        "emails": ["office@cmcluj.ro"],
        "languages": ["ro", "en"],
        "areas": [PQ],
        "keywords": {"economic_activities": ["Q"], "policy_areas": [], "areas": {PQ: ["doctor_of_medicine"]}},
        "first_user": {"name": "Ana Pop", "email": f"ana.pop.{uuid.uuid4().hex[:6]}@cmcluj.ro", "language": "ro"},
    }
    body.update(overrides)
    return body


@dataclass
class World:
    registry: RegistryUnderTest
    ids: dict[str, str] = field(default_factory=dict)  # name -> user id (the token)
    authorities: dict[str, str] = field(default_factory=dict)  # name -> authority id

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ids[who]}"}

    async def call(self, method: str, url: str, who: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = self.auth(who) if who else {}
        return await self.registry.client.request(method, url, headers=headers, **kwargs)

    async def user_id_by_email(self, email: str) -> str:
        async with self.registry.runtime.sessions() as session:
            return str(await session.scalar(select(User.id).where(User.email == email)))


async def build_world(registry: RegistryUnderTest) -> World:
    world = World(registry)
    async with registry.runtime.messaging.transaction() as uow:
        await bootstrap(
            uow,
            registry.runtime.settings,
            commission_email="helpdesk@ec.example.eu",
            coordinators=[CoordinatorSpec("RO", "coord@anpc.example.ro"), CoordinatorSpec("IE", "imi@gov.example.ie")],
        )
    for name, email in (
        ("commission", "helpdesk@ec.example.eu"),
        ("ro_coordinator", "coord@anpc.example.ro"),
        ("ie_coordinator", "imi@gov.example.ie"),
    ):
        world.ids[name] = await world.user_id_by_email(email)
    async with registry.runtime.sessions() as session:
        for name in ("commission", "ro_coordinator", "ie_coordinator"):
            user = await session.get(User, uuid.UUID(world.ids[name]))
            assert user is not None
            world.authorities[name] = str(user.authority_id)

    for key, body in (
        ("college", college()),
        ("national_college", college("Colegiul Medicilor din România", level="national", region=None)),
    ):
        created = await world.call("POST", "/authorities", "ro_coordinator", json=body)
        assert created.status_code == 201, created.text
        authority_id = created.json()["authority"]["id"]
        world.authorities[key] = authority_id
        world.ids[f"{key}_first_user"] = created.json()["first_user"]["id"]
        validated = await world.call("POST", f"/authorities/{authority_id}/validate", "ro_coordinator")
        assert validated.status_code == 200, validated.text

    college_id = world.authorities["college"]
    for name, roles in (
        ("handler", [{"role": "request_handler", "area": PQ}]),
        ("basic", []),
        ("allocator", [{"role": "allocator", "area": PQ}, {"role": "request_handler", "area": PQ}]),
    ):
        response = await world.call(
            "POST",
            f"/authorities/{college_id}/users",
            "college_first_user",
            json={"name": f"Colleague {name}", "email": f"{name}@cmcluj.example.ro", "language": "ro", "roles": roles},
        )
        assert response.status_code == 201, response.text
        world.ids[name] = response.json()["id"]
    return world
