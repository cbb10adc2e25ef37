"""Endpoint x actor: who may call what in the registry. Each row lists the actors allowed; every
other actor gets 403 (401 without a token) and changes nothing."""

from __future__ import annotations

import pytest

from tests.registry.test_authorities import counts
from tests.registry.world import PQ, UserIdTokens, World, build_world, college


def registry_verifier(_settings):  # type: ignore[no-untyped-def]
    return UserIdTokens()


ACTORS = {
    "basic user": "basic",
    "request handler": "handler",
    "local data administrator": "college_first_user",
    "coordinator's data administrator": "ro_coordinator",
    "the Commission": "commission",
    "user of another authority": "national_college_first_user",
}


def _user(name: str):  # type: ignore[no-untyped-def]
    return lambda w: w.ids[name]


def _authority(name: str):  # type: ignore[no-untyped-def]
    return lambda w: w.authorities[name]


# (method, path template, body factory, actors allowed, success status)
MATRIX = [
    ("GET", "/authorities/{college}", None, set(ACTORS), 200),
    ("PATCH", "/authorities/{college}", lambda w: {"phone": "+40 1"}, {"local data administrator"}, 200),
    (
        "PUT",
        "/authorities/{college}/official-name",
        lambda w: {"official_name": "Nou"},
        {"coordinator's data administrator"},
        200,
    ),
    (
        "POST",
        "/authorities/{college}/links",
        lambda w: {"linked_authority_id": w.authorities["national_college"]},
        {"local data administrator"},
        200,
    ),
    (
        "PUT",
        "/authorities/{college}/request-coordinators",
        lambda w: {"area": PQ, "coordinator_id": w.authorities["ro_coordinator"], "full_view": True},
        {"local data administrator"},
        200,
    ),
    (
        "GET",
        "/authorities/{college}/warnings",
        None,
        {"local data administrator", "coordinator's data administrator"},
        200,
    ),
    (
        "GET",
        "/authorities/{college}/audit",
        None,
        {"local data administrator", "coordinator's data administrator"},
        200,
    ),
    (
        "PUT",
        "/authorities/{college}/translations/en",
        lambda w: {"informal_name": "Regional college"},
        {"the Commission"},
        200,
    ),
    (
        "POST",
        "/authorities/{college}/users",
        lambda w: {"name": "New", "email": "matrix@cmcluj.example.ro", "language": "ro"},
        {"local data administrator"},
        201,
    ),
    (
        "GET",
        "/authorities/{college}/users",
        None,
        {"basic user", "request handler", "local data administrator", "coordinator's data administrator"},
        200,
    ),
    ("GET", "/users/{handler}/username", None, {"local data administrator", "coordinator's data administrator"}, 200),
    ("POST", "/users/{handler}/password-reset", None, {"local data administrator"}, 204),
    (
        "PUT",
        "/users/{handler}/roles",
        lambda w: {"roles": [{"role": "allocator", "area": PQ}]},
        {"local data administrator"},
        200,
    ),
    ("POST", "/users/{handler}/deactivate", None, {"local data administrator"}, 200),
    ("POST", "/authorities", lambda w: college("Colegiul Medicilor Arad"), {"coordinator's data administrator"}, 201),
    (
        "PUT",
        "/coordinators/{ro_coordinator}/settings/" + PQ,
        lambda w: {"referral": "no"},
        {"coordinator's data administrator"},
        200,
    ),
    (
        "POST",
        "/invitations",
        lambda w: {"email": "invited@example.ro"},
        {"coordinator's data administrator"},
        201,
    ),
]


@pytest.mark.parametrize(
    ("method", "template", "body", "allowed", "status"), MATRIX, ids=[f"{m} {t}" for m, t, *_ in MATRIX]
)
async def test_each_registry_endpoint_answers_each_actor_as_the_rules_say(
    registry, method, template, body, allowed, status
):
    world: World = await build_world(registry)
    path = template.format(
        college=world.authorities["college"],
        ro_coordinator=world.authorities["ro_coordinator"],
        handler=world.ids["handler"],
    )
    payload = body(world) if body else None
    anonymous = await world.call(method, path, None, json=payload)
    assert anonymous.status_code == 401, anonymous.text
    # Refused actors first: a refusal must leave everything as it was for the allowed one.
    for actor in sorted(ACTORS, key=lambda a: a in allowed):
        before = await counts(world)
        response = await world.call(method, path, ACTORS[actor], json=payload)
        if actor in allowed:
            assert response.status_code == status, f"{actor}: {response.text}"
        else:
            assert response.status_code == 403, f"{actor} should be refused: {response.text}"
            assert response.json()["error"]["code"] == "forbidden"
            assert await counts(world) == before
