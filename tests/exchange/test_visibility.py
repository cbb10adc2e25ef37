"""Who sees what of a request (rules P3, P4, S4, S5), attachments, overviews, action lists and
statistics."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from services.exchange import routes
from shared.settings import Settings
from tests.exchange.world import PQ, ExchangeWorld, exchange_world

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


# Every piece of personal data a referred request can hold (rule P2's list): the subject's data,
# answers to personal-data questions, a free-text answer to a question not flagged personal (free
# text is personal data), an attachment's name and content, and the free text of every step.
REFERRAL_SECRETS = (
    "Murphy-Unique-7731",
    "1980-05-17",
    "Secret-Place-1177",
    "Please check the diploma",
    "Secret-Answer-5521",
    "Secret-Duration-6620",
    "1999-09-09",
    "Secret-File-4410",
    "Secret-Note-9182",
    "Secret-Question-3307",
    "Secret-Refusal-8843",
    "Secret-Referral-2291",
)
REFERRAL_QUESTIONS = {
    "pq.identity.document_matches": "yes",
    "pq.sanctions.details": "Secret-Answer-5521",
    "pq.diploma.authentic": "yes",
    "pq.diploma.training_duration": "Secret-Duration-6620",
    "pq.diploma.date_of_award": "1999-09-09",
}


async def referral_with_every_kind_of_personal_data(world: ExchangeWorld) -> tuple[str, str]:
    """A request in referral holding every kind of personal data; its id and its attachment's id."""
    subject = {"family_name": "Murphy-Unique-7731", "given_names": "Siobhan", "date_of_birth": "1980-05-17",
               "place_of_birth": "Secret-Place-1177", "profession": "doctor"}  # fmt: skip
    request_id = await world.accepted_request(question_ids=list(REFERRAL_QUESTIONS), subject=subject)
    file = ("Murphy-Unique-7731-diploma.pdf", PDF + b"% Secret-File-4410\n", "application/pdf")
    upload = await world.call("POST", f"/requests/{request_id}/attachments", "ro_handler", files={"file": file})
    assert upload.status_code == 201, upload.text
    steps = [
        ("PUT", "answers", "ro_handler", {"answers": REFERRAL_QUESTIONS}),
        ("POST", "comments", "ie_handler", {"comment": "Secret-Note-9182"}),
        ("POST", "reply", "ro_handler", {}),
        ("POST", "additional-information", "ie_handler", {"comment": "Secret-Question-3307"}),
        ("POST", "additional-information/refusal", "ro_handler", {"comment": "Secret-Refusal-8843"}),
        ("POST", "referral", "ie_handler", {"comment": "Secret-Referral-2291"}),
    ]
    for method, step, who, body in steps:
        response = await world.call(method, f"/requests/{request_id}/{step}", who, json=body)
        assert response.status_code in (200, 201), (step, response.text)
    assert response.json()["state"] == "referred"
    return request_id, upload.json()["id"]


def every_exchange_call(world: ExchangeWorld, request_id: str, attachment_id: str) -> list[tuple[str, str, dict]]:
    """One or more calls of every route the exchange serves, on the referred request; the referral
    opinion comes last, so that every call is made while the referral runs."""
    college, council = world.authorities["ro_college"], world.authorities["ie_council"]
    r, other = f"/requests/{request_id}", str(world.authorities["ro_other"])
    text = {"json": {"comment": "A coordinator's note."}}
    return [
        ("GET", "/health/live", {}),
        ("GET", "/health/ready", {}),
        ("GET", "/metrics", {}),
        ("GET", "/question-sets", {}),
        ("GET", "/actions", {}),
        *[("GET", f"/statistics?group_by={group}", {}) for group in ("authority", "country", "country_pair", "area")],
        ("GET", "/requests?box=received", {}),
        ("GET", "/requests?box=sent", {}),
        ("GET", f"/requests?box=received&authority_id={college}", {}),
        ("GET", f"/requests?box=sent&authority_id={council}", {}),
        ("GET", f"/requests?box=sent&authority_id={council}&state=referred", {}),
        ("GET", r, {}),
        ("GET", f"{r}?lang=fi&translate_free_text=true", {}),
        ("GET", f"{r}/attachments/{attachment_id}", {}),
        ("POST", "/_dev/clock", {"json": {"advance": "P1D"}}),
        ("POST", "/requests", {"json": {"area": PQ}}),
        ("PATCH", r, {"json": {"reply_date": "2026-06-01"}}),
        ("DELETE", r, {}),
        ("POST", f"{r}/send", {}),
        ("POST", f"{r}/approve", {}),
        ("POST", f"{r}/reject", text),
        ("POST", f"{r}/withdraw", {"json": {}}),
        ("POST", f"{r}/accept", {}),
        ("POST", f"{r}/allocate", {"json": {"user_id": str(world.users["ro_handler2"])}}),
        ("POST", f"{r}/forward", {"json": {"authority_id": other}}),
        ("POST", f"{r}/forward-questions", {"json": {"authority_id": other, "question_ids": ["pq.sanctions.details"]}}),
        ("POST", f"{r}/reply-date/proposal", {"json": {"reply_date": "2026-06-01"}}),
        ("POST", f"{r}/reply-date/answer", {"json": {"agree": True}}),
        ("PUT", f"{r}/answers", {"json": {"answers": {"pq.identity.document_matches": "no"}}}),
        ("POST", f"{r}/reply", {"json": {}}),
        ("POST", f"{r}/reply/approve", {}),
        ("POST", f"{r}/reply/reject", text),
        ("POST", f"{r}/close", {"json": {}}),
        ("POST", f"{r}/additional-information", text),
        ("POST", f"{r}/additional-information/refusal", text),
        ("POST", f"{r}/referral", {"json": {}}),
        ("POST", f"{r}/reopen", text),
        ("POST", f"{r}/comments", text),
        ("POST", f"{r}/attachments", {"files": {"file": ("note.pdf", PDF, "application/pdf")}}),
        ("POST", f"{r}/referral/opinion", {"json": {"comment": "The answer was complete."}}),
    ]


def route_of(world: ExchangeWorld, method: str, url: str) -> tuple[str, str]:
    """The declared route a call reaches, as the OpenAPI document names it."""
    path = url.split("?")[0]
    for declared, operations in world.app.openapi()["paths"].items():
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", declared)
        if method.lower() in operations and re.fullmatch(pattern, path):
            return method, declared
    raise AssertionError(f"{method} {url} reaches no declared route")


class RecordingTranslator:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        self.texts += texts
        return [f"[{target}] {t}" for t in texts]


@pytest.mark.parametrize("coordinator_user", ["ro_coord_user", "ro_referral_user"])
async def test_a_coordinator_with_full_view_during_a_referral_receives_no_personal_data_from_any_endpoint_rule_p4(
    world, monkeypatch, coordinator_user
):
    """Rule P4 (and S5, S14): the Romanian coordinator has full view of the college's requests and is
    referred. Every route of the exchange is called as one of its users while the referral runs:
    no answer, header or error carries any of the request's personal data, and none is handed to the
    machine-translation service either."""
    translator = RecordingTranslator()

    @asynccontextmanager
    async def configured(_settings: object) -> AsyncIterator[RecordingTranslator]:
        yield translator

    monkeypatch.setattr(routes, "configured_translator", configured)
    request_id, attachment_id = await referral_with_every_kind_of_personal_data(world)
    calls = every_exchange_call(world, request_id, attachment_id)
    declared = {(m.upper(), p) for p, operations in world.app.openapi()["paths"].items() for m in operations}
    assert {route_of(world, method, url) for method, url, _ in calls} == declared  # every route, none left out

    # The secrets are really there: the parties' request handlers read every one of them.
    party = [
        (await world.call("GET", f"/requests/{request_id}", "ie_handler")).text,
        (await world.call("GET", f"/requests/{request_id}?translate_free_text=true", "ro_handler")).text,
        (await world.call("GET", f"/requests/{request_id}/attachments/{attachment_id}", "ie_handler")).text,
    ]
    assert [s for s in REFERRAL_SECRETS if not any(s in text for text in party)] == []
    translator.texts.clear()

    detail = await world.call("GET", f"/requests/{request_id}", coordinator_user)
    assert detail.json()["access"] == "details"  # full view: the details, without personal data
    assert [q["answer"] for q in detail.json()["questions"]] == ["yes", None, "yes", None, None]
    leaks = []
    for method, url, kwargs in calls:
        response = await world.call(method, url, coordinator_user, **kwargs)
        assert response.status_code < 500, (method, url, response.text)
        seen = response.text + json.dumps(dict(response.headers))
        leaks += [(method, url, secret) for secret in REFERRAL_SECRETS if secret in seen]
    assert leaks == []
    assert not any(secret in text for secret in REFERRAL_SECRETS for text in translator.texts)
    assert (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()["state"] == "referred"


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


async def test_anyone_else_learns_nothing_not_even_that_the_request_exists_rule_p3(world):
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


async def test_the_action_list_comes_a_page_at_a_time_soonest_deadline_first_rule_e5(world):
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


async def test_sent_and_received_overviews_filter_and_paginate_rules_s9_e5(world):
    ids = [await world.sent_request() for _ in range(3)]
    await world.call("POST", f"/requests/{ids[0]}/accept", "ro_handler")
    page = (await world.call("GET", "/requests?box=received&page_size=2", "ro_basic")).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    accepted = (await world.call("GET", "/requests?box=received&state=in_progress", "ro_basic")).json()
    assert [i["id"] for i in accepted["items"]] == [ids[0]]
    sent = (await world.call("GET", "/requests?box=sent", "ie_handler")).json()
    assert sent["total"] == 3


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


async def test_each_download_of_an_attachment_is_logged_as_a_read_of_personal_data_rule_p3(world):
    from sqlalchemy import select

    from services.exchange.models import PersonalDataRead

    request_id, attachment_id = await referral_with_every_kind_of_personal_data(world)
    async with world.runtime.sessions() as session:
        before = len((await session.scalars(select(PersonalDataRead))).all())
    download = await world.call("GET", f"/requests/{request_id}/attachments/{attachment_id}", "ie_handler")
    assert download.status_code == 200
    refused = await world.call("GET", f"/requests/{request_id}/attachments/{attachment_id}", "ro_coord_user")
    assert refused.status_code == 403
    async with world.runtime.sessions() as session:
        reads = (await session.scalars(select(PersonalDataRead).order_by(PersonalDataRead.id))).all()
    assert [(str(r.user_id), str(r.request_id), r.at is not None) for r in reads[before:]] == [
        (str(world.users["ie_handler"]), request_id, True)
    ]
