"""The kinds of coordinators and their powers (rules A2, S13): one national coordinator per country;
delegated coordinators for one legislative area or one region; super-delegated coordinators for
every area of one region. Each acts on the competent authorities it covers, and on nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from tests.registry.test_authorities import counts
from tests.registry.world import PQ, SERVICES_AREA, UserIdTokens, World, build_world, college

NO_KEYWORDS = {"economic_activities": [], "policy_areas": [], "areas": {}}


def registry_verifier(_settings):  # type: ignore[no-untyped-def]
    return UserIdTokens()


async def add_coordinator(world: World, key: str, name: str, **overrides: Any) -> str:
    """The national coordinator registers and validates a lower coordinator; its first user (every
    right, data administrator in its areas, rule S9/S13) acts as ``key``."""
    created = await world.call("POST", "/authorities", "ro_coordinator", json=college(name, **overrides))
    assert created.status_code == 201, created.text
    authority_id = created.json()["authority"]["id"]
    validated = await world.call("POST", f"/authorities/{authority_id}/validate", "ro_coordinator")
    assert validated.status_code == 200, validated.text
    world.ids[key] = created.json()["first_user"]["id"]
    world.authorities[key] = authority_id
    return authority_id


@pytest.fixture
async def world(registry) -> World:
    world = await build_world(registry)
    # A delegated coordinator for services (all Romania), one for the region of Cluj, and a
    # super-delegated coordinator for every area of the region of Iași.
    await add_coordinator(
        world,
        "services_coordinator",
        "Coordonatorul IMI pentru servicii",
        kind="delegated_coordinator",
        level="national",
        region=None,
        coordinator_area=SERVICES_AREA,
        areas=[SERVICES_AREA],
        keywords=NO_KEYWORDS,
    )
    await add_coordinator(
        world,
        "cluj_coordinator",
        "Coordonatorul IMI Cluj",
        kind="delegated_coordinator",
        areas=[PQ, SERVICES_AREA],
    )
    await add_coordinator(
        world,
        "iasi_coordinator",
        "Coordonatorul IMI Iași",
        kind="super_delegated_coordinator",
        region="Iași",
        areas=[PQ, SERVICES_AREA],
    )
    return world


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        # A delegated coordinator covers one area or one region: not both, not neither.
        ({"kind": "delegated_coordinator", "coordinator_area": PQ}, "coordinator_area"),
        ({"kind": "delegated_coordinator", "level": "national", "region": None}, "coordinator_area"),
        # One area means it works in that area only.
        (
            {
                "kind": "delegated_coordinator",
                "level": "national",
                "region": None,
                "coordinator_area": PQ,
                "areas": [PQ, SERVICES_AREA],
            },
            "areas",
        ),
        # A super-delegated coordinator covers a region.
        ({"kind": "super_delegated_coordinator", "level": "national", "region": None}, "region"),
        # Only a delegated coordinator is limited to one area.
        ({"coordinator_area": PQ}, "coordinator_area"),
    ],
)
async def test_a_coordinators_scope_is_one_area_or_one_region_else_422_and_nothing_written_rule_a2(
    world, overrides, field
):
    before = await counts(world)
    response = await world.call("POST", "/authorities", "ro_coordinator", json=college("Coordonator", **overrides))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "coordinator_scope"
    assert response.json()["error"]["field"] == field
    assert await counts(world) == before


async def test_a_regional_coordinator_registers_and_validates_authorities_of_its_region_only_rule_a2(world):
    own = await world.call("POST", "/authorities", "cluj_coordinator", json=college("Colegiul Medicilor Dej"))
    assert own.status_code == 201, own.text
    assert own.json()["authority"]["request_coordinators"] == [
        {"area": PQ, "coordinator_id": world.authorities["cluj_coordinator"], "full_view": False}
    ]
    before = await counts(world)
    for who, region in (("cluj_coordinator", "Iași"), ("iasi_coordinator", "Cluj")):
        outside = await world.call("POST", "/authorities", who, json=college("Colegiul Medicilor", region=region))
        assert outside.status_code == 403, (who, outside.text)
        assert outside.json()["error"]["field"] == "region"
    national_level = college("Colegiul Medicilor din România 2", level="national", region=None)
    assert (await world.call("POST", "/authorities", "iasi_coordinator", json=national_level)).status_code == 403
    assert await counts(world) == before
    # The super-delegated coordinator covers every area of its region.
    both = college("Primăria Iași", region="Iași", areas=[PQ, SERVICES_AREA])
    assert (await world.call("POST", "/authorities", "iasi_coordinator", json=both)).status_code == 201

    # A registration of Cluj by the national coordinator: Cluj's coordinator validates it, Iași's cannot.
    pending = await world.call("POST", "/authorities", "ro_coordinator", json=college("Colegiul Medicilor Turda"))
    url = f"/authorities/{pending.json()['authority']['id']}/validate"
    assert (await world.call("POST", url, "iasi_coordinator")).status_code == 403
    assert (await world.call("POST", url, "services_coordinator")).status_code == 403  # not in services
    assert (await world.call("POST", url, "cluj_coordinator")).json()["status"] == "active"


async def test_an_area_coordinator_registers_in_its_area_and_gives_authorities_access_to_it_rules_a2_s13(world):
    services_only = college("Oficiul Registrului Comerțului Cluj", areas=[SERVICES_AREA], keywords=NO_KEYWORDS)
    assert (await world.call("POST", "/authorities", "services_coordinator", json=services_only)).status_code == 201
    in_pq = await world.call("POST", "/authorities", "services_coordinator", json=college("Colegiul Medicilor Alba"))
    assert in_pq.status_code == 403

    college_id = world.authorities["college"]  # registered by the national coordinator, in PQ only
    rename = {"official_name": "Colegiul Medicilor Cluj (redenumit)"}
    name_url = f"/authorities/{college_id}/official-name"
    assert (await world.call("PUT", name_url, "services_coordinator", json=rename)).status_code == 403
    areas_url = f"/authorities/{college_id}/areas"
    assert (await world.call("POST", areas_url, "services_coordinator", json={"area": PQ})).status_code == 403
    granted = await world.call("POST", areas_url, "services_coordinator", json={"area": SERVICES_AREA})
    assert granted.status_code == 200, granted.text
    assert {"area": SERVICES_AREA, "coordinator_id": world.authorities["services_coordinator"], "full_view": False} in (
        granted.json()["request_coordinators"]
    )
    # Now the college works in services: its coordinator for services manages its data (S13).
    assert (await world.call("PUT", name_url, "services_coordinator", json=rename)).status_code == 200


async def test_lower_coordinators_neither_register_nor_manage_coordinators_rule_a2(world):
    before = await counts(world)
    lower = college("Coordonatorul IMI Dej", kind="delegated_coordinator")
    assert (await world.call("POST", "/authorities", "cluj_coordinator", json=lower)).status_code == 403
    assert await counts(world) == before
    rename = {"official_name": "Preluat"}
    # The national coordinator and the Cluj coordinator work in services, yet the services
    # coordinator does not manage them.
    for target in ("ro_coordinator", "cluj_coordinator"):
        authority_id = world.authorities[target]
        url = f"/authorities/{authority_id}/official-name"
        assert (await world.call("PUT", url, "services_coordinator", json=rename)).status_code == 403, target
        deactivate = f"/authorities/{authority_id}/deactivate"
        assert (await world.call("POST", deactivate, "services_coordinator")).status_code == 403, target
        reset = f"/users/{world.ids[target]}/password-reset"
        assert (await world.call("POST", reset, "services_coordinator")).status_code == 403, target
    # The national coordinator does manage the coordinators it registered.
    url = f"/authorities/{world.authorities['cluj_coordinator']}/official-name"
    renamed = await world.call("PUT", url, "ro_coordinator", json={"official_name": "Coordonator Cluj"})
    assert renamed.status_code == 200


async def test_no_national_coordinator_manages_the_commissions_helpdesk_rules_a2_a3(world):
    """The Commission's helpdesk is registered in Belgium; Belgium's coordinator is not its coordinator."""
    belgium = college(
        "Coordinateur national IMI – Belgique",
        kind="national_coordinator",
        country="BE",
        level="national",
        region=None,
        language="fr",
        areas=[PQ, SERVICES_AREA],
    )
    created = await world.call("POST", "/authorities", "commission", json=belgium)
    assert created.status_code == 201, created.text
    world.ids["be_coordinator"] = created.json()["first_user"]["id"]
    commission_id = world.authorities["commission"]
    helpdesk_user = world.ids["commission"]
    for method, url, body in (
        ("PUT", f"/authorities/{commission_id}/official-name", {"official_name": "Helpdesk"}),
        ("POST", f"/authorities/{commission_id}/deactivate", None),
        ("POST", f"/users/{helpdesk_user}/password-reset", None),
        ("GET", f"/users/{helpdesk_user}/username", None),
    ):
        response = await world.call(method, url, "be_coordinator", json=body)
        assert response.status_code == 403, (url, response.text)


async def test_an_invitation_from_a_regional_coordinator_is_for_its_region_rule_a2(world):
    async def register(region: str):  # type: ignore[no-untyped-def]
        invitation = await world.call("POST", "/invitations", "cluj_coordinator", json={"email": "x@example.ro"})
        body = {"token": invitation.json()["token"], "authority": college("Colegiul Medicilor Gherla", region=region)}
        return await world.registry.client.post("/registrations", json=body)

    before = await counts(world)
    elsewhere = await register("Iași")
    assert elsewhere.status_code == 422
    assert elsewhere.json()["error"]["code"] == "region_not_covered"
    assert elsewhere.json()["error"]["field"] == "region"
    assert await counts(world) == before
    assert (await register("Cluj")).status_code == 201
