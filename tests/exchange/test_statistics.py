"""Statistics without personal data, as the Single Market Scoreboard measures authorities: share
of requests accepted within 7 days, average days to answer, share answered by the agreed date; per
authority, country, country pair and legislative area (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.exchange.test_visibility import SECRETS


async def test_statistics_measure_acceptance_time_answer_time_and_punctuality(world):
    quick = await world.sent_request()
    world.clock.travel(timedelta(days=2))
    await world.call("POST", f"/requests/{quick}/accept", "ro_handler")
    await world.answer_all(quick)
    world.clock.travel(timedelta(days=2))
    await world.call("POST", f"/requests/{quick}/reply", "ro_handler", json={})
    slow = await world.sent_request(reply_date="2026-03-20")
    world.clock.travel(timedelta(days=10))
    await world.call("POST", f"/requests/{slow}/accept", "ro_handler")
    figures = (await world.call("GET", "/statistics?group_by=country_pair", "ie_handler")).json()
    assert figures == [
        {
            "group": "IE->RO",
            "received": 2,
            "accepted_within_7_days": 0.5,
            "average_days_to_answer": 4.0,
            "answered_by_agreed_date": 1.0,
        }
    ]
    assert not any(secret in json.dumps(figures) for secret in SECRETS)


async def test_statistics_per_authority_country_and_area(world):
    to_college = await world.sent_request()
    to_other = await world.sent_request(responding_authority_id=str(world.authorities["ro_other"]))
    world.clock.travel(timedelta(days=3))
    await world.call("POST", f"/requests/{to_college}/accept", "ro_handler")
    await world.answer_all(to_college)
    await world.call("POST", f"/requests/{to_college}/reply", "ro_handler", json={})
    world.clock.travel(timedelta(days=6))
    await world.call("POST", f"/requests/{to_other}/accept", "ro_other_handler")

    def figures(group: str, received: int, within: float, days: float | None, on_time: float | None) -> dict:
        return {
            "group": group,
            "received": received,
            "accepted_within_7_days": within,
            "average_days_to_answer": days,
            "answered_by_agreed_date": on_time,
        }

    by_authority = (await world.call("GET", "/statistics?group_by=authority", "fi_user")).json()
    assert by_authority == sorted(
        [
            figures(str(world.authorities["ro_college"]), 1, 1.0, 3.0, 1.0),
            figures(str(world.authorities["ro_other"]), 1, 0.0, None, None),
        ],
        key=lambda f: f["group"],
    )
    assert (await world.call("GET", "/statistics?group_by=country", "fi_user")).json() == [
        figures("RO", 2, 0.5, 3.0, 1.0)
    ]
    assert (await world.call("GET", "/statistics?group_by=area", "fi_user")).json() == [
        figures("professional_qualifications", 2, 0.5, 3.0, 1.0)
    ]
    assert (await world.call("GET", "/statistics?group_by=area&area=services", "fi_user")).json() == []
    wrong = await world.call("GET", "/statistics?group_by=planet", "fi_user")
    assert wrong.status_code == 422


async def test_statistics_count_the_first_answer_not_a_later_one_to_more_questions_rule_e4(world):
    request_id = await world.accepted_request()  # reply date 2026-04-01
    await world.answer_all(request_id)
    world.clock.travel(timedelta(days=4))
    await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    await world.call("POST", f"/requests/{request_id}/additional-information", "ie_handler", json={"comment": "?"})
    world.clock.travel(timedelta(days=40))  # the second answer comes after the reply date
    again = await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    assert again.json()["state"] == "answered"
    [figures] = (await world.call("GET", "/statistics?group_by=country", "fi_user")).json()
    assert figures["average_days_to_answer"] == 4.0
    assert figures["answered_by_agreed_date"] == 1.0
