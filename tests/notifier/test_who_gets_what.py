"""Who gets what (issue 5, rules E2–E5, S8, S9, S11, S13, S14): for every line of the table, the
SMTP server on loopback receives exactly those recipients (no more, no fewer), each once, each in
their preferred language (an authority's address in the authority's language)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from babel.messages.pofile import read_po

from services.notifier.rendering import LOCALES_DIR, SUBJECTS
from shared.contracts import exchange
from shared.contracts.registry import (
    AUTHORITY_REGISTERED,
    TEMPORARY_PASSWORD_ISSUED,
    USER_LOCKED,
    TemporaryPassword,
    UserLocked,
)
from shared.languages import SOURCE_LANGUAGE
from shared.sealing import seal
from tests.notifier.world import NotifierWorld, body, notifier_world

# Each recipient of the small world (tests/notifier/world.py) with the language it reads.
LANGUAGE = {
    "fi_handler": "fi",
    "fi_handler2": "fi",
    "ro_handler": "ro",
    "ro_handler_de": "de",
    "ro_allocator": "ro",
    "ro_college": "ro",  # the Romanian college's own address
    "ro_other": "ro",
    "ro_other_handler": "ro",
    "ro_lda": "ro",
    "ro_coord_handler": "ro",
    "ro_coord_admin": "en",
    "fi_referral_user": "sv",
}


async def allocation_on(world: NotifierWorld) -> None:
    await world.add_authority("ro_college", "RO", coordinators=("ro_coordinator",), allocation=True)


@dataclass(frozen=True)
class Line:
    """One line of the table: what happens (``before`` sets the scene, its mail is not counted),
    which alert kinds it raises and who must get them."""

    happens: Callable[[NotifierWorld], Awaitable[str | None]]
    kinds: frozenset[str]
    recipients: frozenset[str]
    before: Callable[[NotifierWorld], Awaitable[None]] | None = None


def request_event(contract, kinds: set[str], recipients: set[str], before=None, **change) -> Line:
    async def happens(world: NotifierWorld) -> str:
        data = world.change(**change)
        await world.deliver(contract, data)
        return data.reference

    return Line(happens, frozenset(kinds), frozenset(recipients), before)


def temporary_password(reason: str) -> Line:
    async def happens(world: NotifierWorld) -> None:
        sealed = seal(world.settings, "Tq7-vR2m#k9")
        password = TemporaryPassword(user_id=world.users["ro_handler_de"], reason=reason, sealed_password=sealed)
        await world.deliver(TEMPORARY_PASSWORD_ISSUED, password)

    return Line(happens, frozenset({"temporary_password"}), frozenset({"ro_handler_de"}))


async def account_locked(world: NotifierWorld) -> None:
    await world.deliver(
        USER_LOCKED, UserLocked(user_id=world.users["ro_handler_de"], authority_id=world.authorities["ro_college"])
    )


async def registration(world: NotifierWorld) -> None:
    state = world.authority("ro_newcomer", "RO", status="pending_validation", registered_by="ro_coordinator")
    await world.deliver(AUTHORITY_REGISTERED, state)


async def first_allocation(world: NotifierWorld) -> None:
    await allocation_on(world)
    await world.deliver(
        exchange.REQUEST_ALLOCATED, world.change(state="in_progress", allocated="ro_handler", actor="ro_college")
    )


RESPONDERS = {"ro_handler", "ro_handler_de"}  # the college's request handlers in the area
# The Finnish board's request handlers in the area: the one who sent the request and a colleague who
# stands in for them (rule S7).
REQUESTERS = {"fi_handler", "fi_handler2"}
FROM_RO = {"requesting": "ro_college", "responding": "fi_board", "requester": "ro_handler"}

TABLE: dict[str, Line] = {
    # Rules E5, S8: request handlers in the area (not the allocator, not another area's) + address.
    "received_allocation_off": request_event(
        exchange.REQUEST_RECEIVED, {"request_received"}, RESPONDERS | {"ro_college"}, actor="fi_board"
    ),
    # Rule S8: with allocation on, the allocators + address, not the handlers.
    "received_allocation_on": request_event(
        exchange.REQUEST_RECEIVED, {"request_received"}, {"ro_allocator", "ro_college"}, allocation_on, actor="fi_board"
    ),
    # Rule E2: the handler it was given to.
    "allocated": request_event(
        exchange.REQUEST_ALLOCATED,
        {"request_allocated"},
        {"ro_handler_de"},
        allocation_on,
        state="in_progress",
        allocated="ro_handler_de",
        actor="ro_college",
    ),
    # Rule E2 again: the new handler, and the one it was taken from (in Romanian) that a colleague has it.
    "re_allocated": request_event(
        exchange.REQUEST_ALLOCATED,
        {"request_allocated", "request_allocated_elsewhere"},
        {"ro_handler_de", "ro_handler"},
        first_allocation,
        state="in_progress",
        allocated="ro_handler_de",
        previously_allocated="ro_handler",
        actor="ro_college",
    ),
    # Rule E3: the approving coordinator's users for the area (handlers, data administrators).
    "request_awaiting_approval": request_event(
        exchange.REQUEST_SUBMITTED_FOR_APPROVAL,
        {"request_approval_needed"},
        {"ro_coord_handler", "ro_coord_admin"},
        state="awaiting_request_approval",
        approving="ro_coordinator",
        actor="ro_college",
        **FROM_RO,
    ),
    "reply_awaiting_approval": request_event(
        exchange.REPLY_SUBMITTED_FOR_APPROVAL,
        {"reply_approval_needed"},
        {"ro_coord_handler", "ro_coord_admin"},
        state="awaiting_reply_approval",
        approving="ro_coordinator",
        actor="ro_college",
    ),
    # The other side's handlers.
    "answered": request_event(
        exchange.REQUEST_ANSWERED, {"request_answered"}, REQUESTERS, state="answered", actor="ro_college"
    ),
    "additional_information_asked": request_event(
        exchange.ADDITIONAL_INFORMATION_REQUESTED,
        {"additional_information_requested"},
        RESPONDERS,
        state="additional_information_requested",
        actor="fi_board",
    ),
    "additional_information_asked_allocated": request_event(
        exchange.ADDITIONAL_INFORMATION_REQUESTED,
        {"additional_information_requested"},
        {"ro_handler_de"},
        allocation_on,
        state="additional_information_requested",
        allocated="ro_handler_de",
        actor="fi_board",
    ),
    # The new responder receives it (rule E5) and the requester learns where it went.
    "forwarded": request_event(
        exchange.REQUEST_FORWARDED,
        {"request_received", "request_forwarded"},
        {"ro_other_handler", "ro_other"} | REQUESTERS,
        responding="ro_other",
        actor="ro_college",
    ),
    # Rule E1: some questions went to another Romanian authority; the requesting side's handlers
    # learn where (the new responder hears of it by the new request's own received event).
    "questions_forwarded": request_event(
        exchange.REQUEST_QUESTIONS_FORWARDED,
        {"request_questions_forwarded"},
        REQUESTERS,
        state="in_progress",
        previous="in_progress",
        actor="ro_college",
        forwarded_to="ro_other",
        forwarded_as="REQ-2026-000124",
    ),
    "reply_date_proposed": request_event(
        exchange.REPLY_DATE_PROPOSED, {"reply_date_proposed"}, REQUESTERS, state="in_progress", actor="ro_college"
    ),
    # Rules E4, S14: the responder and the referred coordinators as their referral setting says.
    "referred": request_event(
        exchange.REQUEST_REFERRED,
        {"request_referred"},
        RESPONDERS | {"ro_coord_handler", "ro_coord_admin", "fi_referral_user"},
        state="referred",
        actor="fi_board",
        referred=("ro_coordinator", "fi_coordinator"),
    ),
    "closed": request_event(
        exchange.REQUEST_CLOSED, {"request_closed"}, RESPONDERS, state="closed", previous="answered", actor="fi_board"
    ),
    "closed_allocated": request_event(
        exchange.REQUEST_CLOSED,
        {"request_closed"},
        {"ro_handler_de"},
        allocation_on,
        state="closed",
        previous="answered",
        allocated="ro_handler_de",
        actor="fi_board",
    ),
    "withdrawn": request_event(
        exchange.REQUEST_WITHDRAWN,
        {"request_withdrawn"},
        RESPONDERS,
        state="withdrawn",
        previous="awaiting_acceptance",
        actor="fi_board",
    ),
    "overdue": request_event(exchange.REQUEST_OVERDUE, {"request_overdue"}, RESPONDERS, state="in_progress"),
    "overdue_allocated": request_event(
        exchange.REQUEST_OVERDUE,
        {"request_overdue"},
        {"ro_handler_de"},
        allocation_on,
        state="in_progress",
        allocated="ro_handler_de",
    ),
    # Rule S11: that user only.
    "temporary_password_new_user": temporary_password("new_user"),
    "temporary_password_reset": temporary_password("reset"),
    # "Lost credentials", rule S9: the user and the authority's local data administrators.
    "account_locked": Line(
        account_locked,
        frozenset({"account_locked", "account_locked_administrator"}),
        frozenset({"ro_handler_de", "ro_lda"}),
    ),
    # Rule S13: the registering coordinator's data administrators.
    "registration_awaiting_validation": Line(
        registration, frozenset({"registration_awaiting_validation"}), frozenset({"ro_coord_admin"})
    ),
}


def subject_in(language: str, kind: str, reference: str | None) -> str:
    """The subject as the language's catalogue writes it (English: the message itself)."""
    message = SUBJECTS[kind]
    if language != SOURCE_LANGUAGE:
        with (LOCALES_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as po_file:
            message = read_po(po_file)[message].string
    return message.format(reference=reference) if reference else message


@pytest.mark.parametrize("line", TABLE.values(), ids=TABLE.keys())
async def test_each_alert_reaches_exactly_its_recipients_in_their_language(world, line: Line):
    if line.before is not None:
        await line.before(world)
        await world.send_all()
    already = len(world.smtp.received)

    reference = await line.happens(world)
    await world.send_all()

    received = world.smtp.received[already:]
    addresses = [address for message in received for address in message.rcpt_tos]
    assert sorted(addresses) == sorted(world.address(name) for name in line.recipients)  # each exactly once
    kind_of = {d.message_id: d.kind for d in await world.mail()}
    kinds = set()
    for name in line.recipients:
        [message] = [r.message for r in received if r.rcpt_tos == [world.address(name)]]
        language, kind = LANGUAGE[name], kind_of[message["Message-ID"]]
        assert message["Content-Language"] == language, name
        assert f'<html lang="{language}">' in body(message, "html"), name
        assert message["Subject"] == subject_in(language, kind, reference), name
        if language != SOURCE_LANGUAGE:
            assert message["Subject"] != subject_in(SOURCE_LANGUAGE, kind, reference), name
        kinds.add(kind)
    assert kinds == set(line.kinds)


async def test_the_link_goes_to_the_configured_front_end(tmp_path, smtp):
    front_end = "https://portal.example.eu/imi/"  # IMI_PUBLIC_URL, with a path
    async with notifier_world(tmp_path, smtp, settings_overrides={"public_url": front_end}) as world:
        change = world.change(actor="fi_board")
        await world.deliver(exchange.REQUEST_RECEIVED, change)
        assert await world.send_all() == 3
        link = f"https://portal.example.eu/imi/requests/{change.request_id}"
        for received in world.smtp.received:
            assert link in body(received.message, "plain")
            assert f'href="{link}"' in body(received.message, "html")
