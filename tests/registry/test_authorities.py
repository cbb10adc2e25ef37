"""Authorities, coordinators, users and roles: each rule of DOMAIN.md the registry implements."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, timedelta

import pytest
from sqlalchemy import func, select

from services.registry.models import AuditEntry, Authority, Credentials, User
from services.registry.security import verify_password
from shared.outbox import utcnow
from shared.sealing import unseal
from tests.registry.world import PQ, SERVICES_AREA, UserIdTokens, World, build_world, college
from tests.support import tables


def registry_verifier(_settings):  # type: ignore[no-untyped-def]
    return UserIdTokens()


@pytest.fixture
async def world(registry) -> World:
    return await build_world(registry)


async def outbox_events(world: World, event_type: str | None = None) -> list[dict]:
    async with world.registry.runtime.sessions() as session:
        query = select(tables.outbox.c.payload).order_by(tables.outbox.c.seq)
        if event_type:
            query = query.where(tables.outbox.c.event_type == event_type)
        return [json.loads(p) for p in (await session.scalars(query)).all()]


async def counts(world: World) -> tuple[int, int, int]:
    async with world.registry.runtime.sessions() as session:
        return (
            int(await session.scalar(select(func.count()).select_from(Authority)) or 0),
            int(await session.scalar(select(func.count()).select_from(User)) or 0),
            int(await session.scalar(select(func.count()).select_from(tables.outbox)) or 0),
        )


async def test_a_coordinator_registers_an_authority_that_awaits_validation_rule_a2(world):
    created = await world.call("POST", "/authorities", "ro_coordinator", json=college("Colegiul Medicilor Iași"))
    assert created.status_code == 201
    authority = created.json()["authority"]
    assert authority["status"] == "pending_validation"
    # The registering coordinator is the authority's request coordinator for its area (rule S5).
    assert authority["request_coordinators"] == [
        {"area": PQ, "coordinator_id": world.authorities["ro_coordinator"], "full_view": False}
    ]
    # No temporary password while pending: nobody logs into an unvalidated authority.
    user_id = created.json()["first_user"]["id"]
    issued = [e for e in await outbox_events(world, "registry.user.temporary_password_issued.v1")]
    assert user_id not in {e["data"]["user_id"] for e in issued}

    validated = await world.call("POST", f"/authorities/{authority['id']}/validate", "ro_coordinator")
    assert validated.json()["status"] == "active"
    issued = await outbox_events(world, "registry.user.temporary_password_issued.v1")
    assert user_id in {e["data"]["user_id"] for e in issued}


async def test_validation_is_for_the_coordinators_data_administrator_only_rule_s13(world):
    created = await world.call("POST", "/authorities", "ro_coordinator", json=college("Colegiul Medicilor Iași"))
    authority_id = created.json()["authority"]["id"]
    for who in ("ie_coordinator", "college_first_user", "handler"):
        refused = await world.call("POST", f"/authorities/{authority_id}/validate", who)
        assert refused.status_code == 403, who
        assert refused.json()["error"]["code"] == "forbidden"


async def test_a_coordinator_registers_only_authorities_of_its_own_country_rule_a2(world):
    response = await world.call("POST", "/authorities", "ie_coordinator", json=college())
    assert response.status_code == 403


async def test_one_national_coordinator_per_country_rule_a2(world):
    before = await counts(world)
    body = college("Alt coordonator", kind="national_coordinator", level="national", region=None)
    response = await world.call("POST", "/authorities", "commission", json=body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "national_coordinator_exists"
    assert await counts(world) == before


async def test_the_first_user_of_an_authority_has_every_right_rule_s9(world):
    response = await world.call("GET", f"/users/{world.ids['college_first_user']}", "college_first_user")
    roles = {(r["role"], r["area"]) for r in response.json()["roles"]}
    assert roles == {
        ("local_data_administrator", None),
        ("request_handler", PQ),
        ("allocator", PQ),
        ("referral_user", PQ),
    }
    coordinator = await world.call("GET", f"/users/{world.ids['ro_coordinator']}", "ro_coordinator")
    assert ("data_administrator", SERVICES_AREA) in {(r["role"], r["area"]) for r in coordinator.json()["roles"]}


async def test_the_user_name_goes_to_the_administrator_only_and_the_password_only_sealed_rule_s11(world):
    email = "new.colleague@cmcluj.example.ro"
    response = await world.call(
        "POST",
        f"/authorities/{world.authorities['college']}/users",
        "college_first_user",
        json={"name": "Ion Ionescu", "email": email, "language": "ro", "roles": []},
    )
    assert response.status_code == 201
    username = response.json()["username"]
    user_id = response.json()["id"]
    assert username.startswith("ion.ionescu.")

    everything = json.dumps(await outbox_events(world))
    assert username not in everything  # never in any event, hence never in any e-mail
    [issued] = [
        e
        for e in await outbox_events(world, "registry.user.temporary_password_issued.v1")
        if e["data"]["user_id"] == user_id
    ]
    password = unseal(world.registry.runtime.settings, issued["data"]["sealed_password"])
    assert password not in everything
    async with world.registry.runtime.sessions() as session:
        credentials = await session.get(Credentials, uuid.UUID(user_id))
    assert credentials is not None and credentials.password_is_temporary
    assert verify_password(credentials.password_hash, password)


async def test_a_user_name_can_be_changed_and_looked_up_by_an_administrator_only_rule_s11(world):
    handler = world.ids["handler"]
    renamed = await world.call("PATCH", f"/users/{handler}", "handler", json={"username": "maria.handler"})
    assert renamed.status_code == 200
    looked_up = await world.call("GET", f"/users/{handler}/username", "college_first_user")
    assert looked_up.json()["username"] == "maria.handler"
    assert (await world.call("GET", f"/users/{handler}/username", "basic")).status_code == 403
    taken = await world.call("PATCH", f"/users/{world.ids['basic']}", "basic", json={"username": "maria.handler"})
    assert taken.status_code == 409
    assert taken.json()["error"] == {
        "code": "username_in_use",
        "message": "this user name is taken",
        "field": "username",
    }


async def test_every_user_has_an_email_address_no_other_user_has_rule_s10(world):
    before = await counts(world)
    response = await world.call(
        "POST",
        f"/authorities/{world.authorities['college']}/users",
        "college_first_user",
        json={"name": "Copy", "email": "HANDLER@cmcluj.example.ro", "language": "ro"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_in_use"
    assert response.json()["error"]["field"] == "email"
    assert await counts(world) == before


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"country": "US"}, "unknown_country", "country"),
        ({"language": "xx"}, "unknown_language", "language"),
        ({"areas": ["fisheries"]}, "unknown_legislative_area", "areas"),
        ({"keywords": {"areas": {PQ: ["construction"]}}}, "keyword_not_in_area", f"keywords.areas.{PQ}"),
        ({"keywords": {"areas": {SERVICES_AREA: ["construction"]}}}, "area_not_granted", "keywords.areas.services"),
        ({"keywords": {"economic_activities": ["ZZ"]}}, "unknown_keyword", "keywords.economic_activities"),
        ({"level": "local", "region": None}, "region_required", "region"),
    ],
)
async def test_bad_registration_data_gets_a_422_naming_the_field_and_writes_nothing(world, change, code, field):
    before = await counts(world)
    response = await world.call("POST", "/authorities", "ro_coordinator", json=college(**change))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field
    assert await counts(world) == before


async def test_a_role_the_authority_cannot_hold_is_refused_rule_s9(world):
    college_id = world.authorities["college"]
    for roles, code in (
        ([{"role": "data_administrator", "area": PQ}], "role_not_allowed"),
        ([{"role": "translator"}], "role_not_allowed"),
        ([{"role": "request_handler", "area": SERVICES_AREA}], "area_not_granted"),
        ([{"role": "request_handler"}], "role_needs_area"),
        ([{"role": "local_data_administrator", "area": PQ}], "role_has_no_area"),
    ):
        response = await world.call(
            "POST",
            f"/authorities/{college_id}/users",
            "college_first_user",
            json={"name": "X", "email": f"{uuid.uuid4().hex[:8]}@x.example.ro", "language": "ro", "roles": roles},
        )
        assert response.status_code == 422, roles
        assert response.json()["error"]["code"] == code


async def test_a_significant_change_marks_translations_outdated_and_a_spelling_fix_does_not_rule_s1(world):
    college_id = world.authorities["college"]
    translated = await world.call(
        "PUT",
        f"/authorities/{college_id}/translations/en",
        "commission",
        json={"informal_name": "Regional college of physicians of Cluj", "profile": "Recognition of doctors."},
    )
    assert translated.status_code == 200
    assert translated.json()["shown"] == {
        "language": "en",
        "informal_name": "Regional college of physicians of Cluj",
        "profile": "Recognition of doctors.",
        "status": "current",
    }
    fix = await world.call(
        "PATCH",
        f"/authorities/{college_id}",
        "college_first_user",
        json={"informal_name": "Colegiul regional al medicilor din Cluj.", "significant": False},
    )
    assert [t["status"] for t in fix.json()["translations"]] == ["current"]
    change = await world.call(
        "PATCH",
        f"/authorities/{college_id}",
        "college_first_user",
        json={"profile": "Recunoașterea calificărilor și registrul medicilor.", "significant": True},
    )
    assert [t["status"] for t in change.json()["translations"]] == ["outdated"]


async def test_an_untranslated_language_shows_the_original_marked_as_such_rule_s1(world):
    response = await world.call("GET", f"/authorities/{world.authorities['college']}?lang=fi", "ie_coordinator")
    shown = response.json()["shown"]
    assert shown["status"] == "untranslated"
    assert shown["language"] == "ro"
    assert shown["informal_name"] == "Colegiul regional al medicilor din Cluj"


async def test_only_the_commissions_translators_provide_translations_rule_a3(world):
    response = await world.call(
        "PUT",
        f"/authorities/{world.authorities['college']}/translations/en",
        "college_first_user",
        json={"informal_name": "Self-made translation"},
    )
    assert response.status_code == 403


async def test_only_a_coordinators_data_administrator_changes_the_official_name_rule_s13(world):
    url = f"/authorities/{world.authorities['college']}/official-name"
    body = {"official_name": "Colegiul Medicilor Cluj (nou)"}
    assert (await world.call("PUT", url, "college_first_user", json=body)).status_code == 403
    assert (await world.call("PUT", url, "ie_coordinator", json=body)).status_code == 403
    # A colleague at the coordinator without the data administrator role may not either.
    colleague = await world.call(
        "POST",
        f"/authorities/{world.authorities['ro_coordinator']}/users",
        "ro_coordinator",
        json={"name": "Coordinator Colleague", "email": "colleague@anpc.example.ro", "language": "ro"},
    )
    world.ids["coordinator_colleague"] = colleague.json()["id"]
    assert (await world.call("PUT", url, "coordinator_colleague", json=body)).status_code == 403
    # Nor does the authority rename itself through its own data.
    patched = await world.call("PATCH", f"/authorities/{world.authorities['college']}", "college_first_user", json=body)
    assert patched.status_code == 422
    changed = await world.call("PUT", url, "ro_coordinator", json=body)
    assert changed.status_code == 200
    assert changed.json()["official_name"] == "Colegiul Medicilor Cluj (nou)"


async def test_links_are_made_by_a_local_data_administrator_with_an_authority_of_the_same_country_rule_s4(world):
    url = f"/authorities/{world.authorities['college']}/links"
    national = {"linked_authority_id": world.authorities["national_college"]}
    assert (await world.call("POST", url, "handler", json=national)).status_code == 403
    linked = await world.call("POST", url, "college_first_user", json=national)
    assert linked.status_code == 200
    assert linked.json()["links"] == [world.authorities["national_college"]]

    before = await counts(world)
    abroad = await world.call(
        "POST", url, "college_first_user", json={"linked_authority_id": world.authorities["ie_coordinator"]}
    )
    assert abroad.status_code == 422
    assert abroad.json()["error"] == {
        "code": "link_across_countries",
        "message": "linked authorities are of the same country",
        "field": "linked_authority_id",
    }
    assert await counts(world) == before


async def test_each_area_keeps_at_least_one_request_coordinator_and_full_view_is_granted_per_coordinator_rule_s5(
    world,
):
    college_id = world.authorities["college"]
    coordinator = world.authorities["ro_coordinator"]
    granted = await world.call(
        "PUT",
        f"/authorities/{college_id}/request-coordinators",
        "college_first_user",
        json={"area": PQ, "coordinator_id": coordinator, "full_view": True},
    )
    assert granted.json()["request_coordinators"] == [{"area": PQ, "coordinator_id": coordinator, "full_view": True}]
    last = await world.call(
        "DELETE", f"/authorities/{college_id}/request-coordinators/{PQ}/{coordinator}", "college_first_user"
    )
    assert last.status_code == 409
    assert last.json()["error"]["code"] == "last_request_coordinator"
    not_coordinator = await world.call(
        "PUT",
        f"/authorities/{college_id}/request-coordinators",
        "college_first_user",
        json={"area": PQ, "coordinator_id": world.authorities["national_college"]},
    )
    assert not_coordinator.json()["error"]["code"] == "not_a_coordinator"


async def test_allocation_cannot_be_on_without_an_allocator_rule_s8(world):
    college_id = world.authorities["college"]
    # Nobody but the allocator colleague and the first user allocates; take the role from both.
    for who in ("allocator", "college_first_user"):
        roles = [{"role": "request_handler", "area": PQ}]
        if who == "college_first_user":
            roles.append({"role": "local_data_administrator"})
        assert (
            await world.call("PUT", f"/users/{world.ids[who]}/roles", "college_first_user", json={"roles": roles})
        ).status_code == 200
    refused = await world.call(
        "PATCH", f"/authorities/{college_id}", "college_first_user", json={"allocation_enabled": True}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "allocation_needs_allocator"

    allocator_roles = {"roles": [{"role": "allocator", "area": PQ}]}
    await world.call("PUT", f"/users/{world.ids['allocator']}/roles", "college_first_user", json=allocator_roles)
    on = await world.call(
        "PATCH", f"/authorities/{college_id}", "college_first_user", json={"allocation_enabled": True}
    )
    assert on.json()["allocation_enabled"] is True
    # ... and the last allocator cannot lose the role while allocation is on.
    stripped = await world.call(
        "PUT", f"/users/{world.ids['allocator']}/roles", "college_first_user", json={"roles": []}
    )
    assert stripped.status_code == 409
    assert stripped.json()["error"]["code"] == "allocation_needs_allocator"


async def test_a_single_request_handler_in_an_area_is_a_warning_rule_s7(world):
    regional = await world.call("POST", "/authorities", "ro_coordinator", json=college("Colegiul Medicilor Sibiu"))
    authority_id = regional.json()["authority"]["id"]
    first_user = regional.json()["first_user"]["id"]
    await world.call("POST", f"/authorities/{authority_id}/validate", "ro_coordinator")
    world.ids["sibiu"] = first_user
    warnings = await world.call("GET", f"/authorities/{authority_id}/warnings", "sibiu")
    assert [w["code"] for w in warnings.json()] == ["single_request_handler"]
    assert (
        await world.call("GET", f"/authorities/{world.authorities['college']}/warnings", "college_first_user")
    ).json() == []


async def test_a_coordinator_chooses_its_referral_and_approval_per_area_rules_s14_s15(world):
    coordinator = world.authorities["ro_coordinator"]
    shown = await world.call("GET", f"/authorities/{coordinator}", "ro_coordinator")
    assert shown.json()["coordinator_settings"][PQ] == {
        "referral": "yes",
        "approve_requests": False,
        "approve_replies": False,
    }
    changed = await world.call(
        "PUT",
        f"/coordinators/{coordinator}/settings/{PQ}",
        "ro_coordinator",
        json={"referral": "no", "approve_requests": True, "approve_replies": True},
    )
    assert changed.json()["coordinator_settings"][PQ] == {
        "referral": "no",
        "approve_requests": True,
        "approve_replies": True,
    }
    delegated = await world.call(
        "PUT", f"/coordinators/{coordinator}/settings/{PQ}", "ro_coordinator", json={"referral": "delegated"}
    )
    assert delegated.status_code == 200  # the first user is also the coordinator's referral user
    foreign = await world.call(
        "PUT", f"/coordinators/{coordinator}/settings/{PQ}", "ie_coordinator", json={"referral": "no"}
    )
    assert foreign.status_code == 403


async def test_passwords_are_reset_by_a_local_data_administrator_or_for_one_by_the_coordinator_rule_s13(world):
    handler = world.ids["handler"]
    assert (await world.call("POST", f"/users/{handler}/password-reset", "basic")).status_code == 403
    assert (await world.call("POST", f"/users/{handler}/password-reset", "college_first_user")).status_code == 204
    # The coordinator's data administrator resets the authority's local data administrator (S13) ...
    lda = world.ids["college_first_user"]
    assert (await world.call("POST", f"/users/{lda}/password-reset", "ro_coordinator")).status_code == 204
    # ... but not an ordinary user, nor does another country's coordinator.
    assert (await world.call("POST", f"/users/{handler}/password-reset", "ro_coordinator")).status_code == 403
    assert (await world.call("POST", f"/users/{lda}/password-reset", "ie_coordinator")).status_code == 403
    resets = [
        e
        for e in await outbox_events(world, "registry.user.temporary_password_issued.v1")
        if e["data"]["reason"] == "reset"
    ]
    assert {e["data"]["user_id"] for e in resets} == {handler, lda}


async def test_every_change_is_audited_with_who_and_when(world):
    college_id = world.authorities["college"]
    await world.call("PATCH", f"/authorities/{college_id}", "college_first_user", json={"phone": "+40 264 111 111"})
    trail = await world.call("GET", f"/authorities/{college_id}/audit", "college_first_user")
    latest = trail.json()[0]
    assert latest["action"] == "updated"
    assert latest["actor_user_id"] == world.ids["college_first_user"]
    assert latest["changes"] == {"phone": "+40 264 111 111"}
    assert [e["action"] for e in trail.json()][-2:] == ["validated", "registered"]
    assert (await world.call("GET", f"/authorities/{college_id}/audit", "basic")).status_code == 403
    async with world.registry.runtime.sessions() as session:
        role_changes = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.entity_type == "user")
        )
    assert role_changes and role_changes >= 6


async def test_events_carry_the_full_current_state_and_never_credentials(world):
    college_id = world.authorities["college"]
    await world.call(
        "POST",
        f"/authorities/{college_id}/links",
        "college_first_user",
        json={"linked_authority_id": world.authorities["national_college"]},
    )
    [*_, latest] = [
        e for e in await outbox_events(world, "registry.authority.updated.v1") if e["data"]["id"] == college_id
    ]
    state = latest["data"]
    assert state["links"] == [world.authorities["national_college"]]
    assert state["areas"] == [PQ]
    assert state["keywords"] == {"economic_activity": ["Q"], PQ: ["doctor_of_medicine"]}
    assert state["emails"] == ["office@cmcluj.ro"]
    assert state["version"] >= 3
    for event in await outbox_events(world):
        text = json.dumps(event)
        assert "password_hash" not in text and "security_code" not in text and "username" not in text


async def test_a_snapshot_request_republishes_every_authority_and_user(world):
    from shared.contracts.exchange import REGISTRY_SNAPSHOT_REQUESTED, SnapshotRequest
    from shared.events.envelope import Envelope

    envelope = Envelope(
        type=REGISTRY_SNAPSHOT_REQUESTED.name,
        occurred_at=utcnow(),
        producer="exchange",
        correlation_id="snap",
        data=SnapshotRequest(reason="read model starts empty").model_dump(),
    )
    runtime = world.registry.runtime
    assert await runtime.messaging.process(envelope, runtime.definition.handlers)
    authorities, users, _ = await counts(world)
    assert len(await outbox_events(world, "registry.authority.republished.v1")) == authorities
    assert len(await outbox_events(world, "registry.user.republished.v1")) == users


async def test_an_invited_authority_registers_itself_and_awaits_validation_rule_a2(world):
    invitation = await world.call("POST", "/invitations", "ro_coordinator", json={"email": "new@authority.example.ro"})
    token = invitation.json()["token"]
    body = {"token": token, "authority": college("Colegiul Medicilor Brașov")}
    registered = await world.registry.client.post("/registrations", json=body)
    assert registered.status_code == 201
    assert registered.json()["authority"]["status"] == "pending_validation"
    again = await world.registry.client.post("/registrations", json=body)
    assert again.status_code == 403
    assert again.json()["error"]["code"] == "invalid_invitation"
    pending = [
        e
        for e in await outbox_events(world, "registry.authority.registered.v1")
        if e["data"]["id"] == registered.json()["authority"]["id"]
    ]
    assert pending[0]["data"]["registered_by"] == world.authorities["ro_coordinator"]


async def test_an_authority_alone_keeps_its_own_data_rule_a1(world):
    """Each authority is responsible for its own data (rule A1): its local data administrator changes
    it; not its colleagues without that role, not another authority, not its coordinator."""
    url = f"/authorities/{world.authorities['college']}"
    change = {"phone": "+40 264 222 222"}
    for who in ("handler", "basic", "national_college_first_user", "ro_coordinator", "commission"):
        refused = await world.call("PATCH", url, who, json=change)
        assert refused.status_code == 403, who
    assert (await world.call("PATCH", url, "college_first_user", json=change)).json()["phone"] == "+40 264 222 222"
    # A competent authority is national, regional or local (rule A1).
    before = await counts(world)
    federal = await world.call("POST", "/authorities", "ro_coordinator", json=college(level="federal"))
    assert federal.status_code == 422
    assert federal.json()["error"]["field"] == "body.level"  # schema errors name the body's field
    assert await counts(world) == before


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"language": "xx"}, "unknown_language", "language"),
        ({"email": "not-an-address"}, "invalid_request", "email"),
        ({"roles": [{"role": "data_administrator", "area": PQ}]}, "role_not_allowed", "roles"),
        ({"roles": [{"role": "request_handler", "area": SERVICES_AREA}]}, "area_not_granted", "roles"),
        ({"roles": [{"role": "request_handler", "area": "fisheries"}]}, "unknown_legislative_area", "roles"),
    ],
)
async def test_a_bad_user_registration_gets_a_422_naming_the_field_and_writes_nothing_rules_s9_s10(
    world, change, code, field
):
    before = await counts(world)
    body = {"name": "Ion Pop", "email": "ion.pop@cmcluj.example.ro", "language": "ro", **change}
    response = await world.call(
        "POST", f"/authorities/{world.authorities['college']}/users", "college_first_user", json=body
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] in (field, f"body.{field}")  # schema errors name the body's field
    assert await counts(world) == before


async def test_a_role_the_actor_may_not_grant_is_refused_and_nothing_written_rule_s9(world):
    """Only a local data administrator of the user's own authority gives roles (rule S9)."""
    basic = world.ids["basic"]
    grant = {"roles": [{"role": "request_handler", "area": PQ}]}
    before = await counts(world)
    for who in ("handler", "basic", "national_college_first_user", "ro_coordinator"):
        response = await world.call("PUT", f"/users/{basic}/roles", who, json=grant)
        assert response.status_code == 403, who
        assert response.json()["error"]["code"] == "forbidden"
    # Nor does anyone but that administrator register users for the authority.
    for who in ("handler", "national_college_first_user", "ro_coordinator"):
        response = await world.call(
            "POST",
            f"/authorities/{world.authorities['college']}/users",
            who,
            json={"name": "Intruder", "email": f"{who}@x.example.ro", "language": "ro", **grant},
        )
        assert response.status_code == 403, who
    assert await counts(world) == before
    async with world.registry.runtime.sessions() as session:
        user = await session.get(User, uuid.UUID(basic))
        assert user is not None
        await session.refresh(user, ["roles"])
        assert user.roles == []


async def test_a_locked_user_reset_by_the_administrator_logs_in_with_the_old_user_name_and_a_new_code_rule_s12(world):
    """Lost credentials and rule S12, end to end: five failures lock; the local data administrator's
    reset sends a new temporary password; the user keeps the user name and chooses a new code."""
    handler = world.ids["handler"]
    username = (await world.call("GET", f"/users/{handler}/username", "college_first_user")).json()["username"]
    client = world.registry.client

    async def temporary_password(reason: str) -> str:
        [*_, issued] = [
            e
            for e in await outbox_events(world, "registry.user.temporary_password_issued.v1")
            if e["data"]["user_id"] == handler and e["data"]["reason"] == reason
        ]
        return unseal(world.registry.runtime.settings, issued["data"]["sealed_password"])

    first_password = await temporary_password("new_user")
    for attempt in range(5):
        refused = await client.post("/auth/login", json={"username": username, "password": f"Wrong-{attempt}"})
        assert refused.status_code == 401
    locked = await client.post("/auth/login", json={"username": username, "password": first_password})
    assert (locked.status_code, locked.json()["error"]["code"]) == (403, "account_locked")

    assert (await world.call("POST", f"/users/{handler}/password-reset", "college_first_user")).status_code == 204
    new_password = await temporary_password("reset")
    assert new_password != first_password
    old = await client.post("/auth/login", json={"username": username, "password": first_password})
    assert old.status_code == 401
    step = await client.post("/auth/login", json={"username": username, "password": new_password})
    assert step.status_code == 200, step.text
    assert step.json()["next"] == "setup"
    chosen = await client.post(
        "/auth/setup",
        json={
            "setup_token": step.json()["setup_token"],
            "new_password": "Avram-Iancu-Street-1",
            "security_code": "271828182845",
        },
    )
    assert chosen.status_code == 200, chosen.text
    again = await client.post("/auth/login", json={"username": username, "password": "Avram-Iancu-Street-1"})
    positions = again.json()["positions"]
    assert len(set(positions)) == 3
    digits = {str(p): "271828182845"[p - 1] for p in positions}
    done = await client.post("/auth/login/code", json={"challenge_id": again.json()["challenge_id"], "digits": digits})
    assert done.status_code == 200, done.text
    assert done.json()["access_token"] and done.json()["refresh_token"]


async def test_links_and_full_view_reach_the_other_services_in_the_authoritys_state_rules_s4_s5_p4(world):
    """The exchange shows linked authorities and coordinators a view without personal data (P4), and
    request details only to coordinators with full view: the authority's events tell it who they are."""
    college_id = world.authorities["college"]
    national_college = world.authorities["national_college"]
    await world.call(
        "POST", f"/authorities/{college_id}/links", "college_first_user", json={"linked_authority_id": national_college}
    )
    cluj = await world.call(
        "POST",
        "/authorities",
        "ro_coordinator",
        json=college("Coordonatorul IMI Cluj", kind="delegated_coordinator"),
    )
    cluj_id = cluj.json()["authority"]["id"]
    await world.call("POST", f"/authorities/{cluj_id}/validate", "ro_coordinator")
    granted = await world.call(
        "PUT",
        f"/authorities/{college_id}/request-coordinators",
        "college_first_user",
        json={"area": PQ, "coordinator_id": cluj_id, "full_view": True},
    )
    assert granted.status_code == 200, granted.text
    [*_, latest] = [
        e for e in await outbox_events(world, "registry.authority.updated.v1") if e["data"]["id"] == college_id
    ]
    assert latest["data"]["links"] == [national_college]
    by_coordinator = {rc["coordinator_id"]: rc["full_view"] for rc in latest["data"]["request_coordinators"]}
    assert by_coordinator == {world.authorities["ro_coordinator"]: False, cluj_id: True}


async def test_every_change_to_a_user_and_its_roles_is_audited_with_who_when_and_what(world):
    basic = world.ids["basic"]
    lda = world.ids["college_first_user"]
    world.registry.clock.travel(timedelta(minutes=7))
    when = world.registry.clock.now()
    roles = [{"role": "request_handler", "area": PQ}]
    assert (await world.call("PUT", f"/users/{basic}/roles", "college_first_user", json={"roles": roles})).is_success
    assert (await world.call("PATCH", f"/users/{basic}", "basic", json={"phone": "+40 700 000 000"})).is_success
    assert (await world.call("POST", f"/users/{basic}/password-reset", "college_first_user")).is_success
    assert (await world.call("POST", f"/users/{basic}/deactivate", "college_first_user")).is_success
    async with world.registry.runtime.sessions() as session:
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "user", AuditEntry.entity_id == basic, AuditEntry.at >= when)
                .order_by(AuditEntry.id)
            )
        ).all()
    assert [(e.action, e.actor_user_id) for e in entries] == [
        ("roles_changed", lda),
        ("updated", basic),
        ("password_reset", lda),
        ("deactivated", lda),
    ]
    assert entries[0].changes == {"roles": roles}
    assert entries[1].changes == {"phone": "+40 700 000 000"}
    assert all(e.at.replace(tzinfo=UTC) == when for e in entries)


async def test_an_authority_is_shown_in_the_callers_preferred_language_unless_another_is_asked_rules_s1_s10(world):
    college_id = world.authorities["college"]
    english = {"informal_name": "Regional college of physicians of Cluj", "profile": "Recognition of doctors."}
    await world.call("PUT", f"/authorities/{college_id}/translations/en", "commission", json=english)
    await world.call("PATCH", f"/users/{world.ids['handler']}", "handler", json={"language": "en"})
    shown = (await world.call("GET", f"/authorities/{college_id}", "handler")).json()["shown"]
    assert (shown["language"], shown["informal_name"], shown["status"]) == ("en", english["informal_name"], "current")
    shown = (await world.call("GET", f"/authorities/{college_id}", "basic")).json()["shown"]  # prefers Romanian
    assert (shown["language"], shown["status"]) == ("ro", "original")
    shown = (await world.call("GET", f"/authorities/{college_id}?lang=en", "basic")).json()["shown"]
    assert shown["informal_name"] == english["informal_name"]
    bad = await world.call("GET", f"/authorities/{college_id}?lang=xx", "basic")
    assert (bad.status_code, bad.json()["error"]["code"], bad.json()["error"]["field"]) == (
        422,
        "unknown_language",
        "lang",
    )
