"""One authority, several departments (rules E6, S6, S8, S9): an authority that works in two
legislative areas with allocation on routes each request to the department of its area; roles are
per area, so a department's handler neither receives nor answers the other department's requests.
The question sets, one per area, show which department a request is for."""

from __future__ import annotations

import pytest

from services.exchange.question_sets import question_set
from shared.settings import Settings
from tests.exchange.world import PQ, SERVICES, ExchangeWorld, exchange_world


@pytest.fixture
async def ministry(tmp_path):
    async with exchange_world(Settings(data_dir=tmp_path)) as world:
        # A Romanian ministry registered once, with both areas and allocation on (rule E6, second way).
        await world.add_authority(
            "ro_ministry", "RO", coordinators=["ro_coordinator"], allocation=True, areas=(PQ, SERVICES)
        )
        await world.add_user("registry_office", "ro_ministry", ["allocator"], "ro", areas=(PQ, SERVICES))
        await world.add_user("health_department", "ro_ministry", ["request_handler"], "ro", areas=(PQ,))
        await world.add_user("trade_department", "ro_ministry", ["request_handler"], "ro", areas=(SERVICES,))
        await world.add_authority("ie_council", "IE", coordinators=["ie_coordinator"], areas=(PQ, SERVICES))
        await world.add_user("ie_services_handler", "ie_council", ["request_handler"], "en", areas=(SERVICES,))
        yield world


async def services_request(world: ExchangeWorld) -> str:
    questions = [q.id for q in question_set(SERVICES).questions()][:2]
    response = await world.call(
        "POST",
        "/requests",
        "ie_services_handler",
        json={
            "area": SERVICES,
            "responding_authority_id": str(world.authorities["ro_ministry"]),
            "question_ids": questions,
            "subject": {"provider_name": "Tara Build Ltd", "establishment_address": "1 Quay Street, Galway"},
            "reply_date": "2026-04-01",
        },
    )
    assert response.status_code == 201, response.text
    request_id = str(response.json()["id"])
    sent = await world.call("POST", f"/requests/{request_id}/send", "ie_services_handler")
    assert sent.status_code == 200, sent.text
    return request_id


async def test_one_authority_routes_each_area_to_its_department_through_allocation_rules_e6_s8_s9(ministry):
    world = ministry
    qualifications = await world.sent_request(responding_authority_id=str(world.authorities["ro_ministry"]))
    services = await services_request(world)
    health, trade = str(world.users["health_department"]), str(world.users["trade_department"])

    # The office allocates each request to the department of its area, and no other.
    wrong = await world.call("POST", f"/requests/{services}/allocate", "registry_office", json={"user_id": health})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "not_a_request_handler", wrong.text
    for request_id, department in ((qualifications, health), (services, trade)):
        allocated = await world.call(
            "POST", f"/requests/{request_id}/allocate", "registry_office", json={"user_id": department}
        )
        assert allocated.json()["allocated_user_id"] == department, allocated.text

    # Each department accepts its own request; the other department may not.
    refused = await world.call("POST", f"/requests/{services}/accept", "health_department")
    assert refused.status_code == 403, refused.text
    assert (await world.call("POST", f"/requests/{services}/accept", "trade_department")).json()[
        "state"
    ] == "in_progress"
    accepted = await world.call("POST", f"/requests/{qualifications}/accept", "health_department")
    assert accepted.json()["state"] == "in_progress"

    # Each department's action list holds its own request (rule E5).
    for who, mine, other in (
        ("health_department", qualifications, services),
        ("trade_department", services, qualifications),
    ):
        actions = (await world.call("GET", "/actions", who)).json()["items"]
        ids = {a["request"]["id"] for a in actions}
        assert mine in ids and other not in ids, (who, actions)


async def test_the_question_sets_show_which_department_a_request_is_for_rule_s6(ministry):
    """Rule S6: one question set per legislative area, read in the user's language, tells a
    department which requests are its own."""
    world = ministry
    response = await world.call("GET", "/question-sets", "trade_department", params={"lang": "ro"})
    assert response.status_code == 200, response.text
    sets = {body["area"]: body for body in response.json()}
    assert set(sets) == {PQ, SERVICES}
    for area, body in sets.items():
        expected = {q.id for q in question_set(area).questions()}
        found = {q["id"] for section in body["sections"] for q in section["questions"]}
        assert found == expected
        english = {s.title_in("en") for s in question_set(area).sections}
        assert english.isdisjoint({section["title"] for section in body["sections"]})  # read in Romanian
