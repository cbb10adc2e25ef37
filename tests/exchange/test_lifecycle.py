"""The life of a request: every transition, who may make it, and what it records (rules E1–E4, S8,
S14, S15, Invariant 5)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.exchange.lifecycle import mark_overdue
from services.exchange.models import Message, PersonalDataRead, Request, Transition
from services.exchange.question_sets import question_set
from shared.settings import Settings
from tests.exchange.world import PQ, ExchangeWorld, exchange_world


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[ExchangeWorld]:
    async with exchange_world(Settings(data_dir=tmp_path, outbox_poll_interval=0.1)) as made:
        yield made


@pytest.fixture
async def allocating(tmp_path) -> AsyncIterator[ExchangeWorld]:
    async with exchange_world(Settings(data_dir=tmp_path), allocation=True) as made:
        yield made


@pytest.fixture
async def approving(tmp_path) -> AsyncIterator[ExchangeWorld]:
    async with exchange_world(Settings(data_dir=tmp_path), approvals=True) as made:
        yield made


async def state_of(world: ExchangeWorld, request_id: str, who: str = "ie_handler") -> str:
    response = await world.call("GET", f"/requests/{request_id}", who)
    return str(response.json()["state"])


async def test_a_request_written_in_english_is_read_in_romanian_rule_e1(world):
    request_id = await world.sent_request()
    read = await world.call("GET", f"/requests/{request_id}", "ro_handler")
    assert read.status_code == 200
    body = read.json()
    assert body["state"] == "awaiting_acceptance"
    qs = question_set(PQ)
    assert [q["text"] for q in body["questions"]] == [
        qs.question(q).text_in("ro")
        for q in ("pq.identity.document_matches", "pq.diploma.authentic", "pq.sanctions.any")
    ]
    assert {s["field_id"]: s["value"] for s in body["subject"]}["family_name"] == "Murphy-Unique-7731"
    assert body["messages"][0] == {
        **body["messages"][0],
        "text": "Please check the diploma of this doctor.",
        "language": "en",
    }
    english = (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()
    assert english["questions"][0]["text"] == qs.question("pq.identity.document_matches").text_in("en")


async def test_each_read_of_personal_data_is_logged_rule_p3(world):
    request_id = await world.sent_request()
    await world.call("GET", f"/requests/{request_id}", "ro_handler")
    await world.call("GET", f"/requests/{request_id}", "ro_handler")
    async with world.runtime.sessions() as session:
        reads = (await session.scalars(select(PersonalDataRead))).all()
    readers = [(str(r.user_id), str(r.request_id)) for r in reads if str(r.request_id) == request_id]
    assert readers.count((str(world.users["ro_handler"]), request_id)) == 2


@pytest.mark.parametrize(
    ("override", "code", "field"),
    [
        ({"question_ids": ["svc.establishment.legally_established"]}, "question_not_in_set", "question_ids"),
        ({"area": "fisheries"}, "unknown_legislative_area", "area"),
        ({"subject": {"shoe_size": "44"}}, "unknown_subject_field", "subject.shoe_size"),
        ({"subject": {"date_of_birth": "17/05/1980"}}, "wrong_answer_type", "subject.date_of_birth"),
    ],
)
async def test_bad_drafts_are_refused_with_the_field_and_nothing_is_written(world, override, code, field):
    body = {"area": PQ, "question_ids": ["pq.identity.document_matches"], **override}
    response = await world.call("POST", "/requests", "ie_handler", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field
    async with world.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Request)) == 0


async def test_a_responding_authority_without_the_legislative_area_is_refused(world):
    await world.add_authority("ro_services_only", "RO")
    state = world.authority_state["ro_services_only"].model_copy(update={"areas": ["services"], "version": 2})
    from shared.contracts.registry import AUTHORITY_UPDATED

    await world.deliver(AUTHORITY_UPDATED, state)
    response = await world.call(
        "POST",
        "/requests",
        "ie_handler",
        json={"area": PQ, "responding_authority_id": str(world.authorities["ro_services_only"])},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "responding_authority_lacks_area"


async def test_sending_needs_a_responder_questions_required_subject_data_and_a_future_reply_date(world):
    no_date = await world.draft(reply_date="2026-03-01")
    refused = await world.call("POST", f"/requests/{no_date}/send", "ie_handler")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "reply_date_not_in_future"
    missing = await world.draft(subject={"family_name": "X"})
    refused = await world.call("POST", f"/requests/{missing}/send", "ie_handler")
    assert refused.json()["error"]["code"] == "subject_field_missing"
    assert await state_of(world, missing) == "draft"


async def test_only_request_handlers_of_the_area_write_requests(world):
    response = await world.call("POST", "/requests", "ro_basic", json={"area": PQ})
    assert response.status_code == 403


async def test_a_draft_is_edited_and_deleted_only_while_it_is_a_draft_rule_e1(world):
    request_id = await world.draft()
    edited = await world.call("PATCH", f"/requests/{request_id}", "ie_handler", json={"reply_date": "2026-05-01"})
    assert edited.status_code == 200
    assert (await world.call("GET", f"/requests/{request_id}", "ro_handler")).status_code == 404  # drafts are private
    deleted = await world.call("DELETE", f"/requests/{request_id}", "ie_handler")
    assert deleted.status_code == 204
    assert (await world.call("GET", f"/requests/{request_id}", "ie_handler")).status_code == 404
    assert [e["data"]["request_id"] for e in await world.events("exchange.request.draft_deleted.v1")] == [request_id]

    sent = await world.sent_request()
    assert (await world.call("PATCH", f"/requests/{sent}", "ie_handler", json={})).json()["error"]["code"] == (
        "transition_not_allowed"
    )
    assert (await world.call("DELETE", f"/requests/{sent}", "ie_handler")).status_code == 409


async def test_requests_and_replies_go_through_their_coordinators_when_they_approve_rules_e3_s15(approving):
    world = approving
    request_id = await world.draft()
    sent = await world.call("POST", f"/requests/{request_id}/send", "ie_handler")
    assert sent.json()["state"] == "awaiting_request_approval"
    assert sent.json()["approving_coordinator_id"] == str(world.authorities["ie_coordinator"])
    # Not sent on yet (E3): the responding side, its coordinator included, does not even see it.
    assert (await world.call("POST", f"/requests/{request_id}/approve", "ro_coord_user")).status_code == 404
    assert (await world.call("GET", f"/requests/{request_id}", "ro_handler")).status_code == 404
    assert (await world.call("POST", f"/requests/{request_id}/approve", "ie_handler")).status_code == 403
    rejected = await world.call(
        "POST", f"/requests/{request_id}/reject", "ie_coord_user", json={"comment": "Add the diploma."}
    )
    assert rejected.json()["state"] == "draft"
    await world.call("POST", f"/requests/{request_id}/send", "ie_handler")
    approved = await world.call("POST", f"/requests/{request_id}/approve", "ie_coord_user")
    assert approved.json()["state"] == "awaiting_acceptance"

    await world.call("POST", f"/requests/{request_id}/accept", "ro_handler")
    await world.answer_all(request_id)
    replied = await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    assert replied.json()["state"] == "awaiting_reply_approval"
    back = await world.call("POST", f"/requests/{request_id}/reply/reject", "ro_coord_user", json={"comment": "Check."})
    assert back.json()["state"] == "in_progress"
    await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    final = await world.call("POST", f"/requests/{request_id}/reply/approve", "ro_coord_user")
    assert final.json()["state"] == "answered"
    types = [e["type"] for e in await world.events() if e["type"].startswith("exchange.")]
    assert "exchange.request.submitted_for_approval.v1" in types
    assert "exchange.reply.submitted_for_approval.v1" not in types  # replies are request events too
    assert "exchange.request.reply_submitted_for_approval.v1" in types


async def test_with_allocation_the_allocator_allocates_and_only_the_allocated_handler_answers_rules_e2_s8(allocating):
    world = allocating
    request_id = await world.sent_request()
    handler = str(world.users["ro_handler2"])
    refused = await world.call("POST", f"/requests/{request_id}/allocate", "ro_handler2", json={"user_id": handler})
    assert refused.status_code == 403
    not_handler = await world.call(
        "POST", f"/requests/{request_id}/allocate", "ro_allocator", json={"user_id": str(world.users["ro_basic"])}
    )
    assert not_handler.json()["error"]["code"] == "not_a_request_handler"
    allocated = await world.call("POST", f"/requests/{request_id}/allocate", "ro_allocator", json={"user_id": handler})
    assert allocated.json()["allocated_user_id"] == handler
    accepted = await world.call("POST", f"/requests/{request_id}/accept", "ro_handler2")
    assert accepted.json()["state"] == "in_progress"
    answers = {"answers": {"pq.identity.document_matches": "yes"}}
    assert (await world.call("PUT", f"/requests/{request_id}/answers", "ro_handler", json=answers)).status_code == 200
    # ro_handler is an allocator too; a plain handler who is not allocated may not answer:
    await world.add_user("ro_handler3", "ro_college", ["request_handler"], "ro")
    assert (await world.call("PUT", f"/requests/{request_id}/answers", "ro_handler3", json=answers)).status_code == 403
    reallocated = await world.call(
        "POST", f"/requests/{request_id}/allocate", "ro_allocator", json={"user_id": str(world.users["ro_handler3"])}
    )
    assert reallocated.status_code == 200
    assert [e["data"]["allocated_user_id"] for e in await world.events("exchange.request.allocated.v1")] == [
        handler,
        str(world.users["ro_handler3"]),
    ]


async def test_a_re_allocation_names_the_handler_the_request_was_taken_from_rule_e2(allocating):
    """Rule E2: the allocated event of a re-allocation names the previous handler (so the notifier
    tells them); a first allocation and every other transition leave the field null."""
    world = allocating
    request_id = await world.sent_request()
    first, second = str(world.users["ro_handler2"]), str(world.users["ro_handler"])
    for handler in (first, second):
        body = {"user_id": handler}
        response = await world.call("POST", f"/requests/{request_id}/allocate", "ro_allocator", json=body)
        assert response.status_code == 200, response.text
    accepted = await world.call("POST", f"/requests/{request_id}/accept", "ro_handler")
    assert accepted.status_code == 200, accepted.text

    allocated = [e["data"] for e in await world.events("exchange.request.allocated.v1")]
    assert [(e["allocated_user_id"], e["previously_allocated_user_id"]) for e in allocated] == [
        (first, None),
        (second, first),
    ]
    others = [e for e in await world.events() if e["type"].startswith("exchange.request.")]
    others = [e for e in others if e["type"] != "exchange.request.allocated.v1"]
    assert {e["type"] for e in others} >= {"exchange.request.received.v1", "exchange.request.accepted.v1"}
    assert all(e["data"]["previously_allocated_user_id"] is None for e in others)


async def test_without_allocation_there_is_nothing_to_allocate(world):
    request_id = await world.sent_request()
    response = await world.call(
        "POST", f"/requests/{request_id}/allocate", "ro_handler", json={"user_id": str(world.users["ro_handler2"])}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "allocation_off"


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("pq.identity.document_matches", "maybe"),
        ("pq.diploma.authentic", True),
        ("pq.sanctions.any", ["no"]),
    ],
)
async def test_an_answer_of_the_wrong_type_is_refused_naming_the_question(world, question, value):
    request_id = await world.accepted_request()
    response = await world.call(
        "PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": {question: value}}
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        **response.json()["error"],
        "code": "wrong_answer_type",
        "field": f"answers.{question}",
    }


async def test_answers_of_every_type_are_checked(world):
    questions = [
        "pq.diploma.date_of_award",
        "pq.diploma.level",
        "pq.good_standing.restrictions",
        "pq.sanctions.details",
        "pq.diploma.copy",
    ]
    request_id = await world.accepted_request(question_ids=questions)
    good = {
        "pq.diploma.date_of_award": "2005-07-01",
        "pq.diploma.level": question_set(PQ).question("pq.diploma.level").options[0].id,
        "pq.good_standing.restrictions": [question_set(PQ).question("pq.good_standing.restrictions").options[0].id],
        "pq.sanctions.details": "None recorded.",
    }
    ok = await world.call("PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": good})
    assert ok.status_code == 200, ok.text
    for question, bad in (
        ("pq.diploma.date_of_award", "July 2005"),
        ("pq.diploma.level", "phd-from-mars"),
        ("pq.good_standing.restrictions", []),
        ("pq.sanctions.details", "  "),
        ("pq.diploma.copy", "not-an-attachment"),
    ):
        response = await world.call(
            "PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": {question: bad}}
        )
        assert response.status_code == 422, question
    unanswered = await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    assert unanswered.json()["error"]["code"] == "questions_unanswered"


async def test_the_responder_forwards_to_an_authority_of_its_country_and_loses_sight_of_it_rules_e1_p3(world):
    request_id = await world.sent_request()
    abroad = await world.call(
        "POST",
        f"/requests/{request_id}/forward",
        "ro_handler",
        json={"authority_id": str(world.authorities["fi_board"])},
    )
    assert abroad.json()["error"]["code"] == "forward_across_countries"
    forwarded = await world.call(
        "POST",
        f"/requests/{request_id}/forward",
        "ro_handler",
        json={"authority_id": str(world.authorities["ro_other"]), "comment": "Not ours."},
    )
    assert forwarded.status_code == 200
    assert (await world.call("GET", f"/requests/{request_id}", "ro_handler")).status_code == 404
    assert (await world.call("GET", f"/requests/{request_id}", "ro_other_handler")).json()[
        "state"
    ] == "awaiting_acceptance"
    [event] = await world.events("exchange.request.forwarded.v1")
    assert event["data"]["responding_authority_id"] == str(world.authorities["ro_other"])


async def test_some_questions_are_forwarded_as_a_request_of_their_own_rule_e1(world):
    request_id = await world.accepted_request()
    response = await world.call(
        "POST",
        f"/requests/{request_id}/forward-questions",
        "ro_handler",
        json={"authority_id": str(world.authorities["ro_other"]), "question_ids": ["pq.sanctions.any"]},
    )
    assert response.status_code == 201
    child = response.json()["id"]
    child_view = (await world.call("GET", f"/requests/{child}", "ro_other_handler")).json()
    assert [q["id"] for q in child_view["questions"]] == ["pq.sanctions.any"]
    assert child_view["parent_request_id"] == request_id
    parent = (await world.call("GET", f"/requests/{request_id}", "ro_handler")).json()
    assert [q["forwarded_to_request_id"] for q in parent["questions"]] == [None, None, child]
    answers = {"answers": {"pq.identity.document_matches": "yes", "pq.diploma.authentic": "no"}}
    await world.call("PUT", f"/requests/{request_id}/answers", "ro_handler", json=answers)
    assert (await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})).json()[
        "state"
    ] == "answered"


async def test_the_questions_forwarded_event_names_where_the_questions_went_rule_e1(world):
    """Rule E1: the requesting side learns to which authority some questions went, and as which
    request; every other transition leaves these fields null."""
    request_id = await world.accepted_request()
    response = await world.call(
        "POST",
        f"/requests/{request_id}/forward-questions",
        "ro_handler",
        json={"authority_id": str(world.authorities["ro_other"]), "question_ids": ["pq.sanctions.any"]},
    )
    assert response.status_code == 201, response.text
    child = response.json()
    [event] = await world.events("exchange.request.questions_forwarded.v1")
    data = event["data"]
    assert data["request_id"] == request_id
    assert data["responding_authority_id"] == str(world.authorities["ro_college"])
    assert (data["forwarded_to_authority_id"], data["forwarded_as_request_id"], data["forwarded_as_reference"]) == (
        str(world.authorities["ro_other"]),
        child["id"],
        child["reference"],
    )
    assert child["reference"].startswith("REQ-") and child["reference"] != data["reference"]
    others = [e for e in await world.events() if e["type"].startswith("exchange.request.")]
    others = [e for e in others if e["type"] != "exchange.request.questions_forwarded.v1"]
    assert {e["type"] for e in others} >= {"exchange.request.received.v1", "exchange.request.accepted.v1"}
    fields = ("forwarded_to_authority_id", "forwarded_as_request_id", "forwarded_as_reference")
    assert all(e["data"][f] is None for e in others for f in fields)


async def test_another_reply_date_is_proposed_and_the_requester_agrees_rule_e1(world):
    request_id = await world.sent_request()
    proposed = await world.call(
        "POST",
        f"/requests/{request_id}/reply-date/proposal",
        "ro_handler",
        json={"reply_date": "2026-05-15", "comment": "We need the archive."},
    )
    assert proposed.json()["proposed_reply_date"] == "2026-05-15"
    blocked = await world.call("POST", f"/requests/{request_id}/accept", "ro_handler")
    assert blocked.json()["error"]["code"] == "reply_date_pending"
    agreed = await world.call("POST", f"/requests/{request_id}/reply-date/answer", "ie_handler", json={"agree": True})
    assert agreed.json()["reply_date"] == "2026-05-15"
    assert agreed.json()["proposed_reply_date"] is None


async def test_more_information_as_often_as_needed_then_refusal_referral_and_closure_rule_e4(world):
    request_id = await world.answered_request()
    for _ in range(2):
        more = await world.call(
            "POST",
            f"/requests/{request_id}/additional-information",
            "ie_handler",
            json={"comment": "Which university?"},
        )
        assert more.json()["state"] == "additional_information_requested"
        await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    await world.call(
        "POST", f"/requests/{request_id}/additional-information", "ie_handler", json={"comment": "And the transcript?"}
    )
    cannot = await world.call(
        "POST",
        f"/requests/{request_id}/additional-information/refusal",
        "ro_handler",
        json={"comment": "We hold no transcripts."},
    )
    assert cannot.json()["state"] == "additional_information_refused"
    referred = await world.call("POST", f"/requests/{request_id}/referral", "ie_handler", json={})
    assert referred.json()["state"] == "referred"
    coordinators = {str(world.authorities["ro_coordinator"]), str(world.authorities["ie_coordinator"])}
    assert set(referred.json()["referral_coordinator_ids"]) == coordinators
    assert (
        await world.call("POST", f"/requests/{request_id}/referral/opinion", "ro_handler", json={"comment": "x"})
    ).status_code == 403
    await world.call("POST", f"/requests/{request_id}/referral/opinion", "ie_coord_user", json={"comment": "Fair."})
    assert await state_of(world, request_id) == "referred"
    again = await world.call("POST", f"/requests/{request_id}/referral/opinion", "ie_coord_user", json={"comment": "x"})
    assert again.json()["error"]["code"] == "opinion_given"
    await world.call("POST", f"/requests/{request_id}/referral/opinion", "ro_coord_user", json={"comment": "Agreed."})
    assert await state_of(world, request_id) == "closed"


async def test_a_coordinator_that_does_not_take_part_in_referrals_is_not_referred_rule_s14(tmp_path):
    async with exchange_world(Settings(data_dir=tmp_path), referral="no") as world:
        request_id = await world.answered_request()
        await world.call("POST", f"/requests/{request_id}/additional-information", "ie_handler", json={"comment": "?"})
        await world.call(
            "POST", f"/requests/{request_id}/additional-information/refusal", "ro_handler", json={"comment": "No."}
        )
        response = await world.call("POST", f"/requests/{request_id}/referral", "ie_handler", json={})
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "no_referral_coordinators"


async def test_a_delegated_referral_is_answered_by_the_coordinators_referral_user_rule_s14(tmp_path):
    async with exchange_world(Settings(data_dir=tmp_path), referral="delegated") as world:
        request_id = await world.answered_request()
        await world.call("POST", f"/requests/{request_id}/additional-information", "ie_handler", json={"comment": "?"})
        await world.call(
            "POST", f"/requests/{request_id}/additional-information/refusal", "ro_handler", json={"comment": "No."}
        )
        await world.call("POST", f"/requests/{request_id}/referral", "ie_handler", json={})
        denied = await world.call(
            "POST", f"/requests/{request_id}/referral/opinion", "ro_coord_user", json={"comment": "x"}
        )
        assert denied.status_code == 403
        given = await world.call(
            "POST", f"/requests/{request_id}/referral/opinion", "ro_referral_user", json={"comment": "Opinion."}
        )
        assert given.status_code == 200


async def test_the_requester_accepts_the_answer_and_closes_rule_e1(world):
    request_id = await world.answered_request()
    closed = await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
    assert closed.json()["state"] == "closed"
    assert closed.json()["closed_at"] is not None
    [event] = await world.events("exchange.request.closed.v1")
    assert event["data"]["closed_at"] is not None


async def test_the_requester_withdraws_before_acceptance_and_not_after_rule_e1(world):
    request_id = await world.sent_request()
    withdrawn = await world.call("POST", f"/requests/{request_id}/withdraw", "ie_handler", json={})
    assert withdrawn.json()["state"] == "withdrawn"
    accepted = await world.accepted_request()
    late = await world.call("POST", f"/requests/{accepted}/withdraw", "ie_handler", json={})
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "transition_not_allowed"


async def test_a_transition_not_allowed_from_the_current_state_changes_nothing(world):
    request_id = await world.sent_request()
    async with world.runtime.sessions() as session:
        before = await session.scalar(select(func.count()).select_from(Transition))
    for method, path, who, body in (
        ("POST", "close", "ie_handler", {}),
        ("POST", "reply", "ro_handler", {}),
        ("POST", "referral", "ie_handler", {}),
        ("POST", "approve", "ro_coord_user", None),
    ):
        response = await world.call(method, f"/requests/{request_id}/{path}", who, json=body)
        assert response.status_code in (403, 404, 409), path
    async with world.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Transition)) == before


async def test_every_transition_is_recorded_with_who_when_from_to_and_comment_and_published_invariant_5(world):
    request_id = await world.answered_request()
    await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={"comment": "Thank you."})
    async with world.runtime.sessions() as session:
        rows = (
            await session.scalars(
                select(Transition).where(Transition.request_id == uuid.UUID(request_id)).order_by(Transition.id)
            )
        ).all()
        comments = {
            t.action: (await session.get(Message, t.message_id)).text  # type: ignore[union-attr]
            for t in rows
            if t.message_id is not None
        }
    steps = [(t.action, t.from_state, t.to_state) for t in rows]
    assert steps == [
        ("drafted", None, "draft"),
        ("sent", "draft", "awaiting_acceptance"),
        ("accepted", "awaiting_acceptance", "in_progress"),
        ("answered", "in_progress", "answered"),
        ("closed", "answered", "closed"),
    ]
    assert all(t.actor_user_id and t.at for t in rows)
    assert {t.actor_user_id for t in rows[3:]} == {world.users["ro_handler"], world.users["ie_handler"]}
    assert comments == {"drafted": "Please check the diploma of this doctor.", "closed": "Thank you."}
    published = [e["type"] for e in await world.events() if e["type"].startswith("exchange.request")]
    assert published == [
        "exchange.request.drafted.v1",
        "exchange.request.received.v1",
        "exchange.request.accepted.v1",
        "exchange.request.answered.v1",
        "exchange.request.closed.v1",
    ]


async def test_personal_data_never_enter_events_rules_p3_p4(world):
    request_id = await world.answered_request()
    await world.call("POST", f"/requests/{request_id}/comments", "ie_handler", json={"comment": "Secret-Note-9182"})
    everything = json.dumps(await world.events())
    for secret in ("Murphy-Unique-7731", "1980-05-17", "Secret-Note-9182", "Please check the diploma"):
        assert secret not in everything


async def test_a_request_past_its_reply_date_is_overdue_once_rule_e1(world):
    request_id = await world.accepted_request()
    world.clock.travel(timedelta(days=31))
    async with world.runtime.messaging.transaction() as uow:
        assert await mark_overdue(uow, uow.clock.now().date()) == 1
    async with world.runtime.messaging.transaction() as uow:
        assert await mark_overdue(uow, uow.clock.now().date()) == 0
    assert [e["data"]["request_id"] for e in await world.events("exchange.request.overdue.v1")] == [request_id]
    assert (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()["overdue"] is True


async def test_a_closed_request_is_reopened_for_more_information_rule_e4(world):
    request_id = await world.answered_request()
    await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
    reopened = await world.call("POST", f"/requests/{request_id}/reopen", "ie_handler", json={"comment": "One more."})
    assert reopened.json()["state"] == "additional_information_requested"
    assert reopened.json()["closed_at"] is None


async def test_a_closed_request_can_be_reopened_until_its_retention_deadline_rule_p2(world):
    """Closed 2 March 09:00: the deadline is 2 September 09:00 (P6M in calendar months, 184 days)."""
    request_id = await world.answered_request()
    closed = await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
    assert closed.json()["closed_at"].startswith("2026-03-02T09:00")
    world.clock.travel(timedelta(days=184) - timedelta(minutes=1))
    reopened = await world.call("POST", f"/requests/{request_id}/reopen", "ie_handler", json={"comment": "One more."})
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["state"] == "additional_information_requested"


async def test_reopening_after_the_retention_deadline_is_refused_rule_p2(world):
    """P2: the personal data are deleted at the latest six months after closure, so the request cannot
    come back into use once that deadline has passed, even before the purge order arrives."""
    request_id = await world.answered_request()
    await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
    world.clock.travel(timedelta(days=184))  # 2 September 09:00: the deadline itself
    refused = await world.call("POST", f"/requests/{request_id}/reopen", "ie_handler", json={"comment": "One more."})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["field"]) == ("retention_deadline_passed", "state")
    assert "2026-09-02T09:00:00+00:00" in error["message"]
    view = (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()
    assert view["state"] == "closed" and view["closed_at"] is not None
    assert await world.events("exchange.request.reopened.v1") == []


async def test_the_responding_authority_accepts_committing_to_answer_every_question_rule_e1(world):
    request_id = await world.sent_request()
    for outsider in ("ie_handler", "ro_basic", "linked_user"):
        refused = await world.call("POST", f"/requests/{request_id}/accept", outsider)
        assert refused.status_code == 403, outsider
    accepted = await world.call("POST", f"/requests/{request_id}/accept", "ro_handler")
    assert accepted.json()["state"] == "in_progress"
    [event] = await world.events("exchange.request.accepted.v1")
    assert event["data"]["actor_user_id"] == str(world.users["ro_handler"])
    again = await world.call("POST", f"/requests/{request_id}/accept", "ro_handler2")
    assert again.json()["error"]["code"] == "transition_not_allowed"
    # Committed to every question: the reply waits until each has its answer.
    await world.call(
        "PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": {"pq.sanctions.any": "no"}}
    )
    partial = await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    assert partial.json()["error"] == {**partial.json()["error"], "code": "questions_unanswered", "field": "answers"}


async def test_the_responder_forwards_to_the_coordinator_of_its_country_which_answers_it_rules_e1_s5(world):
    request_id = await world.sent_request()
    forwarded = await world.call(
        "POST",
        f"/requests/{request_id}/forward",
        "ro_handler",
        json={"authority_id": str(world.authorities["ro_coordinator"]), "comment": "Not competent."},
    )
    assert forwarded.status_code == 200, forwarded.text
    seen = (await world.call("GET", f"/requests/{request_id}", "ro_coord_user")).json()
    assert seen["access"] == "full" and seen["responding_authority_id"] == str(world.authorities["ro_coordinator"])
    assert (await world.call("POST", f"/requests/{request_id}/accept", "ro_coord_user")).json()["state"] == (
        "in_progress"
    )


async def test_a_forward_to_an_authority_without_the_area_is_refused_and_changes_nothing_rule_e1(world):
    from shared.contracts.registry import AUTHORITY_UPDATED

    await world.add_authority("ro_services_only", "RO")
    state = world.authority_state["ro_services_only"].model_copy(update={"areas": ["services"], "version": 2})
    await world.deliver(AUTHORITY_UPDATED, state)
    request_id = await world.sent_request()
    for target, code in (("ro_services_only", "responding_authority_lacks_area"), ("ro_college", "forward_to_party")):
        refused = await world.call(
            "POST",
            f"/requests/{request_id}/forward",
            "ro_handler",
            json={"authority_id": str(world.authorities[target])},
        )
        assert refused.status_code == 422 and refused.json()["error"]["code"] == code
    assert (await world.call("GET", f"/requests/{request_id}", "ro_handler")).json()["state"] == "awaiting_acceptance"
    assert await world.events("exchange.request.forwarded.v1") == []


async def test_a_proposed_reply_date_the_requester_refuses_leaves_the_agreed_date_rule_e1(world):
    request_id = await world.sent_request()
    await world.call(
        "POST", f"/requests/{request_id}/reply-date/proposal", "ro_handler", json={"reply_date": "2026-05-15"}
    )
    assert (
        await world.call("POST", f"/requests/{request_id}/reply-date/answer", "ro_handler", json={"agree": True})
    ).status_code == 403  # the requester answers it, not the responder
    refused = await world.call("POST", f"/requests/{request_id}/reply-date/answer", "ie_handler", json={"agree": False})
    assert refused.json()["reply_date"] == "2026-04-01" and refused.json()["proposed_reply_date"] is None
    assert (await world.call("POST", f"/requests/{request_id}/accept", "ro_handler")).status_code == 200
    published = [e["type"] for e in await world.events() if "reply_date" in e["type"]]
    assert published == ["exchange.request.reply_date_proposed.v1", "exchange.request.reply_date_answered.v1"]


async def test_a_rejection_needs_a_reason_which_the_requester_reads_rule_e3(approving):
    world = approving
    request_id = await world.draft()
    await world.call("POST", f"/requests/{request_id}/send", "ie_handler")
    for body in ({}, {"comment": "   "}):
        bare = await world.call("POST", f"/requests/{request_id}/reject", "ie_coord_user", json=body)
        assert bare.status_code == 422 and bare.json()["error"]["field"].endswith("comment")
    assert await state_of(world, request_id) == "awaiting_request_approval"
    await world.call("POST", f"/requests/{request_id}/reject", "ie_coord_user", json={"comment": "Add the diploma."})
    seen = (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()
    assert {"kind": "rejection", "text": "Add the diploma."}.items() <= seen["messages"][-1].items()
    assert seen["transitions"][-1] == {
        **seen["transitions"][-1],
        "action": "rejected",
        "from_state": "awaiting_request_approval",
        "to_state": "draft",
        "actor_authority_id": str(world.authorities["ie_coordinator"]),
    }
    [event] = await world.events("exchange.request.rejected.v1")
    assert "Add the diploma." not in str(event)  # the reason is free text: never in an event


async def test_a_request_awaiting_approval_can_be_withdrawn_rules_e1_e3(approving):
    world = approving
    request_id = await world.draft()
    await world.call("POST", f"/requests/{request_id}/send", "ie_handler")
    withdrawn = await world.call("POST", f"/requests/{request_id}/withdraw", "ie_handler", json={"comment": "Solved."})
    assert withdrawn.json()["state"] == "withdrawn"
    late = await world.call("POST", f"/requests/{request_id}/approve", "ie_coord_user")
    assert late.json()["error"]["code"] == "transition_not_allowed"


async def test_a_batch_of_answers_with_one_of_the_wrong_type_changes_nothing(world):
    request_id = await world.accepted_request()
    mixed = {"pq.identity.document_matches": "yes", "pq.diploma.authentic": "yes", "pq.sanctions.any": "perhaps"}
    refused = await world.call("PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": mixed})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "answers.pq.sanctions.any"
    body = (await world.call("GET", f"/requests/{request_id}", "ro_handler")).json()
    assert [q["answer"] for q in body["questions"]] == [None, None, None]
    foreign = await world.call(
        "PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": {"svc.register.entered": "yes"}}
    )
    assert foreign.json()["error"]["code"] == "question_not_in_request"


async def test_a_reply_waiting_for_its_coordinators_approval_past_the_reply_date_is_overdue_rules_e1_e3(approving):
    world = approving
    request_id = await world.draft()
    await world.call("POST", f"/requests/{request_id}/send", "ie_handler")
    await world.call("POST", f"/requests/{request_id}/approve", "ie_coord_user")
    await world.call("POST", f"/requests/{request_id}/accept", "ro_handler")
    await world.answer_all(request_id)
    waiting = await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
    assert waiting.json()["state"] == "awaiting_reply_approval"
    world.clock.travel(timedelta(days=31))
    async with world.runtime.messaging.transaction() as uow:
        assert await mark_overdue(uow, uow.clock.now().date()) == 1
    assert [e["data"]["state"] for e in await world.events("exchange.request.overdue.v1")] == [
        "awaiting_reply_approval"
    ]
    assert (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()["overdue"] is True
    await world.call("POST", f"/requests/{request_id}/reply/approve", "ro_coord_user")
    assert (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()["overdue"] is False


async def test_a_request_keeps_the_question_set_version_it_was_written_with_rules_e1_a4(world, tmp_path, monkeypatch):
    from services.exchange import question_sets as qs

    written = await world.sent_request()
    directory = tmp_path / "sets"
    directory.mkdir()
    for path in qs.QUESTION_SETS_DIR.glob("*.json"):
        (directory / path.name).write_bytes(path.read_bytes())
    data = json.loads((directory / f"{PQ}.v1.json").read_text(encoding="utf-8"))
    data["version"] = 2
    identity = data["sections"][0]["questions"][0]
    assert identity["id"] == "pq.identity.document_matches"
    identity["text"] = {**identity["text"], "en": "Version two: does the identity document match?"}
    data["sections"][-1]["questions"] = data["sections"][-1]["questions"][:1]  # v2 drops a question
    dropped = "pq.language.examinations"
    (directory / f"{PQ}.v2.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(qs, "QUESTION_SETS_DIR", directory)
    qs._all_question_sets.cache_clear()
    try:
        old = (await world.call("GET", f"/requests/{written}", "ie_handler")).json()
        assert old["questions"][0]["text"] == question_set(PQ, 1).question("pq.identity.document_matches").text_in("en")
        newer = await world.draft()
        new = (await world.call("GET", f"/requests/{newer}", "ie_handler")).json()
        assert new["questions"][0]["text"] == "Version two: does the identity document match?"
        gone = await world.call("POST", "/requests", "ie_handler", json={"area": PQ, "question_ids": [dropped]})
        assert gone.json()["error"]["code"] == "question_not_in_set"
        async with world.runtime.sessions() as session:
            versions = {str(r.id): r.question_set_version for r in (await session.scalars(select(Request))).all()}
        assert versions == {written: 1, newer: 2}
        await world.call("POST", f"/requests/{written}/accept", "ro_handler")
        await world.answer_all(written)  # answered against version 1, as written
    finally:
        qs._all_question_sets.cache_clear()


async def test_the_retention_period_is_the_services_own_setting_not_a_default_rule_p2(tmp_path):
    """The deadline the exchange checks is the running service's ``retention_period`` (the same
    setting the retention service counts with), not the six-month default."""
    async with exchange_world(Settings(data_dir=tmp_path, retention_period="P1M")) as short:
        request_id = await short.answered_request()
        await short.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
        short.clock.travel(timedelta(days=32))  # past one month, long before six
        refused = await short.call("POST", f"/requests/{request_id}/reopen", "ie_handler", json={"comment": "More?"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "retention_deadline_passed"
