"""Who gets which alert (rules E1–E5, S8, S13, S14, S15), each in their own language (rule A5):
one delivery per event and recipient, checked on the mail a real SMTP server received."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.notifier.models import DeliveryStatus
from services.notifier.names import area_name
from services.notifier.rendering import render_alert
from shared.contracts import exchange
from shared.contracts.registry import AUTHORITY_REGISTERED, USER_LOCKED, USER_UPDATED, UserLocked
from tests.notifier.world import PQ, PUBLIC_URL, SERVICES, NotifierWorld, body, populate

RO_FROM_FI = {"requesting_country": "Finlanda", "responding_country": "România"}
FI_FROM_FI = {"requesting_country": "Suomi", "responding_country": "Romania"}


def context(world: NotifierWorld, request: str, language: str, authority: str, **extra: Any) -> dict[str, Any]:
    return {
        "request_reference": world.change(request).reference,
        "legislative_area": area_name(PQ, language),
        "authority_name": world.authority_state[authority].informal_name,
        "reply_date": date(2026, 4, 1),
        "link": f"{PUBLIC_URL}/requests/{world.requests[request]}",
        **extra,
    }


def assert_written_as(world: NotifierWorld, recipient: str, kind: str, language: str, variables: dict[str, Any]):
    messages = world.smtp.messages_to(world.address(recipient))
    assert len(messages) == 1, f"{recipient} got {len(messages)} messages"
    message = messages[0]
    expected = render_alert(kind, language, variables)
    assert message["Subject"] == expected.subject
    assert body(message, "plain") == expected.text
    assert body(message, "html").rstrip("\n") == expected.html.rstrip("\n")
    assert message["Content-Language"] == language
    return message


async def test_a_new_request_reaches_the_handlers_and_the_authority_address_each_in_their_language_rule_e5(world):
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    assert (await world.send()).sent == 3

    assert world.recipients() == {
        world.address("ro_handler"),
        world.address("ro_handler_de"),
        world.address("ro_college"),  # the authority's own address, in its language (rule S1)
    }
    variables = context(world, "r1", "ro", "fi_board", **RO_FROM_FI)
    assert_written_as(world, "ro_handler", "request_received", "ro", variables)
    assert_written_as(world, "ro_college", "request_received", "ro", variables)
    german = context(world, "r1", "de", "fi_board", requesting_country="Finnland", responding_country="Rumänien")
    assert_written_as(world, "ro_handler_de", "request_received", "de", german)


async def test_a_romanian_user_reads_romanian_and_a_finnish_user_finnish_rule_a5(world):
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    await world.deliver(exchange.REQUEST_ANSWERED, world.change(state="answered", actor="ro_college"))
    await world.send_all()

    romanian = assert_written_as(
        world, "ro_handler", "request_received", "ro", context(world, "r1", "ro", "fi_board", **RO_FROM_FI)
    )
    assert "primită" in romanian["Subject"]
    finnish = assert_written_as(
        world, "fi_handler", "request_answered", "fi", context(world, "r1", "fi", "ro_college", **FI_FROM_FI)
    )
    assert "Romania" in body(finnish, "plain")
    assert (
        finnish["Subject"]
        != render_alert("request_answered", "en", context(world, "r1", "en", "ro_college", **FI_FROM_FI)).subject
    )


async def test_with_allocation_on_the_allocators_and_the_address_are_alerted_not_the_handlers_rule_s8(tmp_path, smtp):
    from tests.notifier.world import notifier_world

    async with notifier_world(tmp_path, smtp, populate_world=False) as world:
        await populate(world, allocation=True)
        await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
        await world.send_all()
        assert world.recipients() == {world.address("ro_allocator"), world.address("ro_college")}


async def test_with_allocation_off_the_handlers_and_the_address_are_alerted_not_the_allocators_rule_s8(world):
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    await world.send_all()
    assert world.address("ro_allocator") not in world.recipients()
    assert world.address("ro_basic") not in world.recipients()
    assert world.address("ro_services_handler") not in world.recipients()  # another legislative area
    assert {world.address("ro_handler"), world.address("ro_college")} <= world.recipients()


async def test_an_allocation_alerts_only_the_handler_it_was_given_to_rule_e2(world):
    await world.add_authority("ro_college", "RO", coordinators=("ro_coordinator",), allocation=True)
    await world.deliver(
        exchange.REQUEST_ALLOCATED, world.change(state="in_progress", allocated="ro_handler", actor="ro_college")
    )
    await world.send_all()
    assert world.recipients() == {world.address("ro_handler")}
    assert_written_as(
        world, "ro_handler", "request_allocated", "ro", context(world, "r1", "ro", "fi_board", **RO_FROM_FI)
    )


async def test_a_re_allocation_tells_the_handler_it_was_taken_from_naming_nobody_rule_e2(world):
    """Rule E2: the new handler gets ``request_allocated`` (in German), the previous one
    ``request_allocated_elsewhere`` (in Romanian), which names no one (rule S11) and links to the request."""
    await world.add_authority("ro_college", "RO", coordinators=("ro_coordinator",), allocation=True)
    change = world.change(
        state="in_progress", allocated="ro_handler_de", previously_allocated="ro_handler", actor="ro_college"
    )
    await world.deliver(exchange.REQUEST_ALLOCATED, change)
    await world.send_all()

    assert world.recipients() == {world.address("ro_handler_de"), world.address("ro_handler")}
    german = context(world, "r1", "de", "fi_board", requesting_country="Finnland", responding_country="Rumänien")
    assert_written_as(world, "ro_handler_de", "request_allocated", "de", german)
    variables = context(world, "r1", "ro", "fi_board", **RO_FROM_FI)
    told = assert_written_as(world, "ro_handler", "request_allocated_elsewhere", "ro", variables)
    assert told["Subject"] == f"Cererea {change.reference} a fost realocată unui coleg"
    text = body(told, "plain")
    assert "a fost realocată unui coleg" in " ".join(text.split())
    assert variables["link"] in text
    for personal in ("ro_handler_de", "Name of", world.address("ro_handler_de"), str(world.users["ro_handler_de"])):
        assert personal not in text and personal not in body(told, "html")


async def test_a_first_allocation_or_the_same_handler_again_tells_no_previous_handler_rule_e2(world):
    await world.add_authority("ro_college", "RO", coordinators=("ro_coordinator",), allocation=True)
    first = world.change(state="in_progress", allocated="ro_handler", actor="ro_college")
    await world.deliver(exchange.REQUEST_ALLOCATED, first)
    same = world.change("r2", state="in_progress", allocated="ro_handler", previously_allocated="ro_handler")
    await world.deliver(exchange.REQUEST_ALLOCATED, same)
    await world.send_all()

    assert {d.kind for d in await world.mail()} == {"request_allocated"}
    assert len(world.smtp.messages_to(world.address("ro_handler"))) == 2


async def test_after_allocation_the_other_sides_news_go_to_the_allocated_handler_alone(world):
    await world.add_authority("ro_college", "RO", coordinators=("ro_coordinator",), allocation=True)
    change = world.change(state="additional_information_requested", allocated="ro_handler", actor="fi_board")
    await world.deliver(exchange.ADDITIONAL_INFORMATION_REQUESTED, change)
    await world.send_all()
    assert world.recipients() == {world.address("ro_handler")}


async def test_a_request_awaiting_approval_alerts_the_coordinators_handlers_and_data_administrators_rule_e3(world):
    change = world.change(
        requesting="ro_college",
        responding="fi_board",
        requester="ro_handler",
        state="awaiting_request_approval",
        approving="ro_coordinator",
        actor="ro_college",
    )
    await world.deliver(exchange.REQUEST_SUBMITTED_FOR_APPROVAL, change)
    await world.send_all()
    assert world.recipients() == {world.address("ro_coord_handler"), world.address("ro_coord_admin")}
    english = {
        "request_reference": change.reference,
        "legislative_area": area_name(PQ, "en"),
        "authority_name": "Ro College",  # the coordinated, requesting authority
        "responding_country": "Finland",
        "link": f"{PUBLIC_URL}/requests/{change.request_id}",
    }
    assert_written_as(world, "ro_coord_admin", "request_approval_needed", "en", english)


async def test_a_reply_awaiting_approval_alerts_the_responders_coordinator_rule_e3(world):
    change = world.change(state="awaiting_reply_approval", approving="ro_coordinator", actor="ro_college")
    await world.deliver(exchange.REPLY_SUBMITTED_FOR_APPROVAL, change)
    await world.send_all()
    assert world.recipients() == {world.address("ro_coord_handler"), world.address("ro_coord_admin")}


async def test_an_answer_reaches_the_requesting_handlers_even_when_a_coordinator_approved_it(world):
    await world.deliver(exchange.REQUEST_ANSWERED, world.change(state="answered", actor="ro_coordinator"))
    await world.send_all()
    assert world.recipients() == {world.address("fi_handler"), world.address("fi_handler2")}


async def test_the_requesting_side_is_its_handlers_in_the_area_not_only_the_sender_rule_s7(world):
    """A colleague stands in for the handler who sent the request (rule S7): every request handler
    of the requesting authority in the area learns of the answer; other areas' handlers do not."""
    await world.add_user("fi_services_handler", "fi_board", ["request_handler"], "fi", area=SERVICES)
    await world.deliver(exchange.REQUEST_ANSWERED, world.change(state="answered", actor="ro_college"))
    await world.send_all()
    assert world.recipients() == {world.address("fi_handler"), world.address("fi_handler2")}


async def test_the_sender_is_told_when_no_handler_of_the_requesting_side_is_known_in_the_area(world):
    """With no request handler of the requesting authority known in the area (the registry's state
    not arrived yet, say), the one who sent the request is told."""
    change = world.change(state="answered", actor="ro_college").model_copy(update={"area": SERVICES})
    await world.deliver(exchange.REQUEST_ANSWERED, change)
    await world.send_all()
    assert world.recipients() == {world.address("fi_handler")}


async def test_what_the_requester_does_reaches_the_responding_handlers(world):
    await world.deliver(exchange.REQUEST_CLOSED, world.change(state="closed", previous="answered", actor="fi_board"))
    await world.deliver(
        exchange.REQUEST_WITHDRAWN,
        world.change("r2", state="withdrawn", previous="awaiting_acceptance", actor="fi_board"),
    )
    await world.send_all()
    assert [d.kind for d in await world.deliveries(recipient=world.address("ro_handler"))] == [
        "request_closed",
        "request_withdrawn",
    ]
    assert world.address("fi_handler") not in world.recipients()


async def test_a_request_withdrawn_before_its_approval_is_not_announced_to_the_responder(world):
    change = world.change(state="withdrawn", previous="awaiting_request_approval", actor="fi_board")
    await world.deliver(exchange.REQUEST_WITHDRAWN, change)
    assert await world.deliveries() == []


async def test_a_proposed_reply_date_reaches_the_requesting_handlers(world):
    await world.deliver(exchange.REPLY_DATE_PROPOSED, world.change(state="in_progress", actor="ro_college"))
    await world.send_all()
    assert world.recipients() == {world.address("fi_handler"), world.address("fi_handler2")}


async def test_forwarding_alerts_the_new_responder_and_tells_the_requester_where_it_went(world):
    change = world.change(responding="ro_other", state="awaiting_acceptance", actor="ro_college")
    await world.deliver(exchange.REQUEST_FORWARDED, change)
    await world.send_all()
    assert world.recipients() == {
        world.address("ro_other_handler"),
        world.address("ro_other"),
        world.address("fi_handler"),
        world.address("fi_handler2"),
    }
    finnish = {
        "request_reference": change.reference,
        "legislative_area": area_name(PQ, "fi"),
        "authority_name": "Ro Other",  # the authority it was forwarded to
        "link": f"{PUBLIC_URL}/requests/{change.request_id}",
        **FI_FROM_FI,
    }
    assert_written_as(world, "fi_handler", "request_forwarded", "fi", finnish)
    received = render_alert("request_received", "ro", {**finnish, **RO_FROM_FI, "reply_date": date(2026, 4, 1)})
    assert world.smtp.messages_to(world.address("ro_other"))[0]["Subject"] == received.subject


async def test_forwarded_questions_tell_the_requesting_handlers_where_they_went_rule_e1(world):
    """Rule E1: the requesting authority's request handlers (not only the sender, rule S7) learn
    that some questions went to another authority, named in their language, and as which request;
    the link is the request they sent. No user is named (rule S11)."""
    await world.add_authority("ro_other", "RO", coordinators=("ro_coordinator",), translations={"fi": "Ro Muu"})
    change = world.change(
        state="in_progress",
        previous="in_progress",
        actor="ro_college",
        forwarded_to="ro_other",
        forwarded_as="REQ-2026-000124",
    )
    await world.deliver(exchange.REQUEST_QUESTIONS_FORWARDED, change)
    await world.send_all()
    assert world.recipients() == {world.address("fi_handler"), world.address("fi_handler2")}
    finnish = {
        "request_reference": change.reference,
        "legislative_area": area_name(PQ, "fi"),
        "authority_name": "Ro Muu",  # the authority the questions went to, as it calls itself in Finnish
        "forwarded_as_reference": "REQ-2026-000124",
        "link": f"{PUBLIC_URL}/requests/{change.request_id}",
        **FI_FROM_FI,
    }
    for handler in ("fi_handler", "fi_handler2"):
        message = assert_written_as(world, handler, "request_questions_forwarded", "fi", finnish)
        text = body(message, "plain")
        assert "Ro Muu" in text and "REQ-2026-000124" in text
        assert "Name of" not in text + body(message, "html")  # no user's name


async def test_a_referral_alerts_the_responder_and_the_referred_coordinators_rule_e4_s14(world):
    change = world.change(state="referred", actor="fi_board", referred=("ro_coordinator", "fi_coordinator"))
    await world.deliver(exchange.REQUEST_REFERRED, change)
    await world.send_all()
    assert world.recipients() == {
        world.address("ro_handler"),
        world.address("ro_handler_de"),
        world.address("ro_coord_handler"),  # referral "yes": handlers and data administrators
        world.address("ro_coord_admin"),
        world.address("fi_referral_user"),  # referral "delegated": the referral user alone
    }


async def test_an_overdue_request_alerts_the_responding_handlers(world):
    await world.deliver(exchange.REQUEST_OVERDUE, world.change(state="in_progress"))
    await world.send_all()
    assert world.recipients() == {world.address("ro_handler"), world.address("ro_handler_de")}


async def test_inactive_and_unknown_recipients_are_skipped_and_recorded(world):
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    world.users["nobody"] = world.users["fi_handler"].__class__(int=12345)
    # In an area where the requesting side has no handler known here, the one who sent it is
    # addressed, and this one is unknown.
    answered = world.change("r2", requester="nobody", state="answered", actor="ro_college")
    await world.deliver(exchange.REQUEST_ANSWERED, answered.model_copy(update={"area": SERVICES}))
    skipped = await world.deliveries(status=DeliveryStatus.skipped)
    assert {(d.user_id, d.reason) for d in skipped} == {
        (world.users["ro_gone"], "inactive_recipient"),
        (world.users["nobody"], "unknown_recipient"),
    }
    assert all(d.recipient is None for d in skipped)
    await world.send_all()
    assert world.address("ro_gone") not in world.recipients()


async def test_a_locked_account_is_announced_to_its_user(world):
    await world.deliver(
        USER_LOCKED, UserLocked(user_id=world.users["ro_handler"], authority_id=world.authorities["ro_college"])
    )
    await world.send_all()
    assert world.recipients() == {world.address("ro_handler"), world.address("ro_lda")}
    assert_written_as(world, "ro_handler", "account_locked", "ro", {"link": f"{PUBLIC_URL}/login"})
    users = {"link": f"{PUBLIC_URL}/authorities/{world.authorities['ro_college']}/users"}
    assert_written_as(world, "ro_lda", "account_locked_administrator", "ro", users)


LOCKED_NAME = "Ileana Popescu-Lockwood"


async def add_local_data_administrators(world: NotifierWorld) -> None:
    """Besides ro_lda (Romanian): a German one who also handles requests, a deactivated one, a
    locked one, and one at another authority."""
    await world.add_user("ro_lda_de", "ro_college", ["local_data_administrator", "request_handler"], "de")
    await world.add_user("ro_lda_gone", "ro_college", ["local_data_administrator"], "sv", status="deactivated")
    await world.add_user("ro_lda_locked", "ro_college", ["local_data_administrator"], "sv", status="locked")
    await world.add_user("ro_other_lda", "ro_other", ["local_data_administrator"], "ro")


def users_link(world: NotifierWorld, authority: str = "ro_college") -> dict[str, Any]:
    return {"link": f"{PUBLIC_URL}/authorities/{world.authorities[authority]}/users"}


async def test_a_locked_account_alerts_its_user_and_the_authoritys_local_data_administrators(world):
    await add_local_data_administrators(world)
    await world.add_user("ro_locked", "ro_college", ["request_handler"], "fi", full_name=LOCKED_NAME)
    await world.deliver(
        USER_UPDATED,
        world.user("ro_locked", "ro_college", ["request_handler"], "fi", status="locked", full_name=LOCKED_NAME),
    )
    await world.deliver(
        USER_LOCKED, UserLocked(user_id=world.users["ro_locked"], authority_id=world.authorities["ro_college"])
    )
    assert await world.send_all() == 3

    # The user, and the active local data administrators of the user's own authority: not the
    # deactivated or locked ones, not another authority's, not the handlers, coordinators or addresses.
    assert world.recipients() == {world.address("ro_locked"), world.address("ro_lda"), world.address("ro_lda_de")}
    assert_written_as(world, "ro_locked", "account_locked", "fi", {"link": f"{PUBLIC_URL}/login"})
    assert_written_as(world, "ro_lda", "account_locked_administrator", "ro", users_link(world))
    assert_written_as(world, "ro_lda_de", "account_locked_administrator", "de", users_link(world))
    kinds = {(d.user_id, d.kind, d.status) for d in await world.deliveries()}
    assert kinds == {
        (world.users["ro_locked"], "account_locked", DeliveryStatus.sent),
        (world.users["ro_lda"], "account_locked_administrator", DeliveryStatus.sent),
        (world.users["ro_lda_de"], "account_locked_administrator", DeliveryStatus.sent),
        (world.users["ro_lda_gone"], "account_locked_administrator", DeliveryStatus.skipped),
    }


async def test_the_administrators_alert_never_says_whose_account_is_locked_rules_p1_s11(world):
    await add_local_data_administrators(world)
    await world.add_user("ro_locked", "ro_college", ["request_handler"], "fi", full_name=LOCKED_NAME)
    await world.deliver(
        USER_LOCKED, UserLocked(user_id=world.users["ro_locked"], authority_id=world.authorities["ro_college"])
    )
    await world.send_all()

    # The notifier never holds the user name the registry generated (rule S11); the name it does
    # get is in no e-mail, and nothing in the administrators' e-mails points at the user.
    assert len(world.smtp.received) == 3
    for received in world.smtp.received:
        message = received.message
        text = "\n".join([received.content.decode("ascii"), body(message, "plain"), body(message, "html")])
        assert LOCKED_NAME not in text
        if world.address("ro_locked") not in received.rcpt_tos:
            for identifier in ("ro_locked", str(world.users["ro_locked"])):
                assert identifier not in text
    for delivery in await world.mail():
        if delivery.kind == "account_locked_administrator":
            assert delivery.context == {}
            assert delivery.link == f"/authorities/{world.authorities['ro_college']}/users"


async def test_a_locked_local_data_administrator_is_told_as_a_user_and_the_others_as_administrators(world):
    await add_local_data_administrators(world)
    await world.deliver(
        USER_UPDATED, world.user("ro_lda", "ro_college", ["local_data_administrator"], "ro", status="locked")
    )
    await world.deliver(
        USER_LOCKED, UserLocked(user_id=world.users["ro_lda"], authority_id=world.authorities["ro_college"])
    )
    await world.send_all()

    assert world.recipients() == {world.address("ro_lda"), world.address("ro_lda_de")}
    assert_written_as(world, "ro_lda", "account_locked", "ro", {"link": f"{PUBLIC_URL}/login"})
    assert_written_as(world, "ro_lda_de", "account_locked_administrator", "de", users_link(world))


async def test_the_only_local_data_administrator_locked_out_alerts_only_themself(world):
    await world.deliver(
        USER_UPDATED, world.user("ro_lda", "ro_college", ["local_data_administrator"], "ro", status="locked")
    )
    await world.deliver(
        USER_LOCKED, UserLocked(user_id=world.users["ro_lda"], authority_id=world.authorities["ro_college"])
    )
    await world.send_all()

    assert world.recipients() == {world.address("ro_lda")}
    assert {d.kind for d in await world.deliveries()} == {"account_locked"}


async def test_a_registration_awaiting_validation_alerts_the_coordinators_data_administrators_rule_s13(world):
    state = world.authority(
        "ro_newcomer",
        "RO",
        status="pending_validation",
        registered_by="ro_coordinator",
        translations={"en": "Newcomer board"},
    )
    await world.deliver(AUTHORITY_REGISTERED, state)
    await world.send_all()
    assert world.recipients() == {world.address("ro_coord_admin")}
    english = {
        "authority_name": "Newcomer board",
        "legislative_area": area_name(PQ, "en"),
        "link": f"{PUBLIC_URL}/authorities/{state.id}",
    }
    assert_written_as(world, "ro_coord_admin", "registration_awaiting_validation", "en", english)


async def test_a_registration_validated_at_once_alerts_nobody(world):
    state = world.authority("ro_by_commission", "RO", status="active", registered_by="ro_coordinator")
    await world.deliver(AUTHORITY_REGISTERED, state)
    assert await world.deliveries() == []
