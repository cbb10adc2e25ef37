"""Who sees what of a request (rules P3, P4, S4, S5), attachments, overviews, action lists and
statistics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from tests.exchange.world import ExchangeWorld, exchange_world

SECRETS = ("Murphy-Unique-7731", "1980-05-17", "Please check the diploma", "Secret-Answer-5521")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[ExchangeWorld]:
    async with exchange_world(Settings(data_dir=tmp_path), full_view=True) as made:
        yield made


async def personal_request(world: ExchangeWorld) -> str:
    """A referred request with subject data, a personal-data answer, free text and an attachment."""
    request_id = await world.accepted_request(
        question_ids=["pq.identity.document_matches", "pq.sanctions.details", "pq.diploma.authentic"]
    )
    upload = await world.call(
        "POST",
        f"/requests/{request_id}/attachments",
        "ro_handler",
        files={"file": ("decision.pdf", PDF, "application/pdf")},
    )
    assert upload.status_code == 201, upload.text
    answers = {"pq.identity.document_matches": "yes", "pq.sanctions.details": "Secret-Answer-5521",
               "pq.diploma.authentic": "yes"}  # fmt: skip
    assert (
        await world.call("PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": answers})
    ).status_code == 200
    await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    await world.call("POST", f"/requests/{request_id}/additional-information", "ie_handler", json={"comment": "More?"})
    await world.call(
        "POST", f"/requests/{request_id}/additional-information/refusal", "ro_handler", json={"comment": "No."}
    )
    referred = await world.call("POST", f"/requests/{request_id}/referral", "ie_handler", json={})
    assert referred.json()["state"] == "referred"
    return request_id


async def test_the_two_authorities_involved_see_everything_rule_p3(world):
    request_id = await personal_request(world)
    for who in ("ie_handler", "ro_handler"):
        body = (await world.call("GET", f"/requests/{request_id}", who)).json()
        assert body["access"] == "full"
        text = json.dumps(body)
        assert "Murphy-Unique-7731" in text and "Secret-Answer-5521" in text


async def test_a_basic_user_of_an_authority_involved_sees_the_overview_only_rules_p3_s9(world):
    """S9: a basic user "sees an overview of all requests sent and received by the authority" (the
    guide: "o vedere de ansamblu"); the personal data are for those who send and answer them."""
    request_id = await personal_request(world)
    body = (await world.call("GET", f"/requests/{request_id}", "ro_basic")).json()
    assert body["access"] == "overview"
    text = json.dumps(body)
    assert "Murphy-Unique-7731" not in text and "Secret-Answer-5521" not in text
    attachment_id = (await world.call("GET", f"/requests/{request_id}", "ro_handler")).json()["attachments"][0]["id"]
    download = await world.call("GET", f"/requests/{request_id}/attachments/{attachment_id}", "ro_basic")
    assert download.status_code == 403


async def test_a_coordinator_with_full_view_during_a_referral_receives_no_personal_data_from_any_endpoint_rule_p4(
    world,
):
    request_id = await personal_request(world)
    seen = []
    detail = await world.call("GET", f"/requests/{request_id}", "ro_coord_user")
    assert detail.status_code == 200
    assert detail.json()["access"] == "details"
    assert (
        detail.json()["subject"] is None and detail.json()["messages"] is None and detail.json()["attachments"] is None
    )
    assert [q["answer"] for q in detail.json()["questions"]] == ["yes", None, "yes"]
    seen.append(detail.text)
    translated = await world.call("GET", f"/requests/{request_id}?translate_free_text=true&lang=fi", "ro_coord_user")
    seen.append(translated.text)
    for path in ("/actions", f"/requests?box=received&authority_id={world.authorities['ro_college']}",
                 f"/requests?box=sent&authority_id={world.authorities['ie_council']}", "/statistics"):  # fmt: skip
        response = await world.call("GET", path, "ro_coord_user")
        seen.append(response.text)
    attachment_id = (await world.call("GET", f"/requests/{request_id}", "ro_handler")).json()["attachments"][0]["id"]
    download = await world.call("GET", f"/requests/{request_id}/attachments/{attachment_id}", "ro_coord_user")
    assert download.status_code == 403
    seen.append(download.text)
    comment = await world.call("POST", f"/requests/{request_id}/comments", "ro_coord_user", json={"comment": "hi"})
    assert comment.status_code == 403
    opinion = await world.call(
        "POST", f"/requests/{request_id}/referral/opinion", "ro_coord_user", json={"comment": "ok"}
    )
    assert opinion.status_code == 200
    seen.append(opinion.text)
    for secret in SECRETS:
        assert not any(secret in text for text in seen), secret


async def test_a_coordinator_without_full_view_sees_only_the_overview_rule_p4(tmp_path):
    async with exchange_world(Settings(data_dir=tmp_path), full_view=False) as world:
        request_id = await world.sent_request()
        body = (await world.call("GET", f"/requests/{request_id}", "ro_coord_user")).json()
        assert body["access"] == "overview"
        assert body["questions"] == [] and body["transitions"] == [] and body["subject"] is None


async def test_a_linked_authority_sees_an_overview_and_never_personal_data_rule_s4(world):
    request_id = await world.sent_request()
    body = (await world.call("GET", f"/requests/{request_id}", "linked_user")).json()
    assert body["access"] == "overview"
    assert not any(secret in json.dumps(body) for secret in SECRETS)
    listed = await world.call(
        "GET", f"/requests?box=received&authority_id={world.authorities['ro_college']}", "linked_user"
    )
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [request_id]
    assert listed.json()["items"][0]["access"] == "overview"


async def test_anyone_else_learns_nothing_not_even_that_the_request_exists(world):
    request_id = await world.sent_request()
    assert (await world.call("GET", f"/requests/{request_id}", "fi_user")).status_code == 404
    assert (await world.call("GET", f"/requests/{request_id}", None)).status_code == 401
    listing = await world.call(
        "GET", f"/requests?box=received&authority_id={world.authorities['ro_college']}", "fi_user"
    )
    assert listing.status_code == 403


async def test_attachments_have_size_and_type_limits_and_only_the_parties_read_them(world, tmp_path):
    request_id = await world.accepted_request()
    url = f"/requests/{request_id}/attachments"
    limit = world.runtime.settings.attachment_max_bytes
    just_over = PDF + b"0" * (limit + 1 - len(PDF))
    too_big = await world.call("POST", url, "ro_handler", files={"file": ("big.pdf", just_over, "application/pdf")})
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "attachment_too_large"
    huge = await world.call(
        "POST", url, "ro_handler", files={"file": ("huge.pdf", PDF + b"0" * 2 * limit, "application/pdf")}
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "request_too_large"
    script = await world.call(
        "POST", url, "ro_handler", files={"file": ("x.pdf", b"#!/bin/sh\nrm -rf /\n", "application/pdf")}
    )
    assert script.status_code == 415
    assert script.json()["error"]["code"] == "attachment_type_not_allowed"
    stranger = await world.call("POST", url, "fi_user", files={"file": ("a.pdf", PDF, "application/pdf")})
    assert stranger.status_code == 404
    good = await world.call("POST", url, "ro_handler", files={"file": ("decision.pdf", PDF, "application/pdf")})
    assert good.status_code == 201
    attachment_id = good.json()["id"]
    download = await world.call("GET", f"{url}/{attachment_id}", "ie_handler")
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    answered = await world.call(
        "PUT", f"/requests/{request_id}/answers", "ro_handler",
        json={"answers": {"pq.identity.document_matches": "yes"}},
    )  # fmt: skip
    assert answered.status_code == 200


async def test_each_user_sees_what_awaits_their_action_soonest_deadline_first_rule_e5(world):
    late = await world.sent_request(reply_date="2026-06-01")
    soon = await world.sent_request(reply_date="2026-03-20")
    actions = (await world.call("GET", "/actions", "ro_handler")).json()
    assert [(a["request"]["id"], a["action"]) for a in actions["items"]] == [
        (soon, "accept_or_forward"),
        (late, "accept_or_forward"),
    ]
    await world.call("POST", f"/requests/{soon}/accept", "ro_handler")
    await world.answer_all(soon)
    await world.call("POST", f"/requests/{soon}/reply", "ro_handler", json={})
    requester = (await world.call("GET", "/actions", "ie_handler")).json()
    assert [(a["request"]["id"], a["action"]) for a in requester["items"]] == [(soon, "review_answer")]
    assert (await world.call("GET", "/actions", "fi_user")).json() == {
        "items": [],
        "total": 0,
        "page": 1,
        "page_size": 20,
    }


async def test_the_action_list_comes_a_page_at_a_time_soonest_deadline_first(world):
    dates = ["2026-05-04", "2026-03-20", "2026-04-11", "2026-03-25", "2026-06-30"]
    ids = {date: await world.sent_request(reply_date=date) for date in dates}
    pages = [
        (await world.call("GET", f"/actions?page={page}&page_size=2", "ro_handler")).json() for page in (1, 2, 3, 4)
    ]
    assert [page["total"] for page in pages] == [5, 5, 5, 5]
    assert [len(page["items"]) for page in pages] == [2, 2, 1, 0]
    listed = [item["request"]["id"] for page in pages for item in page["items"]]
    assert listed == [ids[date] for date in sorted(dates)]
    assert [item["deadline"] for item in pages[0]["items"]] == ["2026-03-20", "2026-03-25"]


@pytest.mark.parametrize("query", ["page=0", "page_size=0", "page_size=101", "page=x"])
async def test_the_action_list_refuses_a_page_outside_its_limits(world, query):
    response = await world.call("GET", f"/actions?{query}", "ro_handler")
    assert response.status_code == 422


async def test_sent_and_received_overviews_filter_and_paginate(world):
    ids = [await world.sent_request() for _ in range(3)]
    await world.call("POST", f"/requests/{ids[0]}/accept", "ro_handler")
    page = (await world.call("GET", "/requests?box=received&page_size=2", "ro_basic")).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    accepted = (await world.call("GET", "/requests?box=received&state=in_progress", "ro_basic")).json()
    assert [i["id"] for i in accepted["items"]] == [ids[0]]
    sent = (await world.call("GET", "/requests?box=sent", "ie_handler")).json()
    assert sent["total"] == 3


async def test_statistics_measure_acceptance_time_answer_time_and_punctuality(world):
    from datetime import timedelta

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


async def test_an_older_registry_event_never_overwrites_a_newer_one(world):
    from services.exchange.models import KnownAuthority
    from shared.contracts.registry import AUTHORITY_UPDATED

    state = world.authority_state["ro_college"]
    newer = state.model_copy(update={"version": 10, "allocation_enabled": True})
    older = state.model_copy(update={"version": 9, "allocation_enabled": False})
    await world.deliver(AUTHORITY_UPDATED, newer)
    await world.deliver(AUTHORITY_UPDATED, older)
    async with world.runtime.sessions() as session:
        known = await session.get(KnownAuthority, state.id)
    assert known is not None and known.version == 10 and known.allocation_enabled is True
