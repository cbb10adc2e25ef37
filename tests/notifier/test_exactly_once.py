"""One e-mail per event and recipient (ARCHITECTURE.md, Invariants 1 and 2): a redelivered event
sends nothing twice, a sender crash loses nothing and a retry carries the same Message-ID, an SMTP
outage delays mail without losing it, a 5xx refusal is recorded for ops and can be sent again."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import delete

from services.notifier.alerts import RecipientNotYetKnown
from services.notifier.deliveries import message_id_for
from services.notifier.models import DeliveryStatus, messaging
from services.notifier.sender import CLAIM_LEASE, claim_due, message_of
from services.notifier.state import notifier
from shared.contracts import exchange
from shared.contracts.registry import TEMPORARY_PASSWORD_ISSUED, TemporaryPassword
from shared.sealing import seal
from tests.notifier.world import api_client, notifier_world
from tests.support import wait_until

COMMISSION = {"Authorization": "Bearer commission"}
RECEIVERS = ("ro_handler", "ro_handler_de", "ro_college")


def received_alert(world):
    return world.envelope(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))


async def test_a_redelivered_event_sends_nothing_twice(world):
    envelope = received_alert(world)
    assert await world.process(envelope) is True
    assert await world.process(envelope) is False  # the broker delivered it again: the inbox knows it
    await world.send_all()
    assert await world.process(envelope) is False
    await world.send_all()

    assert sorted(r.rcpt_tos[0] for r in world.smtp.received) == sorted(world.address(n) for n in RECEIVERS)
    assert len(await world.mail()) == 3
    for received in world.smtp.received:
        assert received.message["Message-ID"] == message_id_for(envelope.id, received.rcpt_tos[0])


async def test_a_sender_crash_between_claiming_and_marking_loses_no_mail_and_keeps_the_message_id(tmp_path, smtp):
    async with notifier_world(tmp_path, smtp) as world:
        envelope = received_alert(world)
        await world.process(envelope)
        claimed = await claim_due(world.runtime)  # ... and the sender dies before sending anything
        assert len(claimed) == 3
        assert {d.status for d in await world.mail()} == {DeliveryStatus.sending}
        addresses = sorted(world.address(n) for n in RECEIVERS)

    async with notifier_world(tmp_path, smtp, populate_world=False) as restarted:
        restarted.clock.travel(timedelta(minutes=1))
        assert (await restarted.send()).claimed == 0  # the dead sender's claim still holds
        restarted.clock.travel(CLAIM_LEASE)
        assert (await restarted.send()).sent == 3

        assert {d.status for d in await restarted.mail()} == {DeliveryStatus.sent}
        assert sorted(r.rcpt_tos[0] for r in smtp.received) == addresses
        for received in smtp.received:
            assert received.message["Message-ID"] == message_id_for(envelope.id, received.rcpt_tos[0])


async def test_a_mail_sent_again_after_a_crash_carries_the_same_message_id(tmp_path, smtp):
    async with notifier_world(tmp_path, smtp) as world:
        await world.process(received_alert(world))
        claimed = await claim_due(world.runtime, limit=1)
        state = notifier(world.runtime)
        await state.mailer.send(message_of(world.runtime, claimed[0]), claimed[0].recipient)
        # ... the server accepted it and the sender died before recording that

    async with notifier_world(tmp_path, smtp, populate_world=False) as restarted:
        restarted.clock.travel(CLAIM_LEASE + timedelta(seconds=1))
        await restarted.send_all()
        copies = [r.message for r in smtp.received if r.rcpt_tos == [claimed[0].recipient]]
        assert len(copies) == 2
        assert copies[0]["Message-ID"] == copies[1]["Message-ID"] == claimed[0].message_id
        assert len(smtp.received) == 4


async def test_mail_written_while_the_smtp_server_is_down_arrives_after_it_returns(world):
    await world.smtp.stopped()
    await world.process(received_alert(world))

    first = await world.send()
    assert (first.sent, first.retried, first.released) == (0, 1, 2)  # the others wait with it
    rows = await world.mail()
    assert {d.status for d in rows} == {DeliveryStatus.queued}
    assert "unavailable" in (rows[0].last_error or "")
    assert notifier(world.runtime).metrics.smtp_up._value.get() == 0

    assert (await world.send()).claimed == 0  # nothing is hammered at a server that is down
    world.clock.travel(timedelta(seconds=60))
    second = await world.send()
    assert second.retried == 1
    wait = (await world.mail())[0].next_attempt_at
    assert wait is not None
    assert wait.replace(tzinfo=None) - world.clock.now().replace(tzinfo=None) == timedelta(seconds=120)  # it grows

    await world.process(world.envelope(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress")))
    await world.smtp.started()
    world.clock.travel(timedelta(seconds=120))
    assert await world.send_all() == 5
    assert len(world.smtp.received) == 5
    assert {d.status for d in await world.mail()} == {DeliveryStatus.sent}
    assert notifier(world.runtime).metrics.smtp_up._value.get() == 1


async def test_a_connection_the_server_dropped_is_opened_again(world):
    await world.process(world.envelope(exchange.REQUEST_ALLOCATED, world.change(allocated="ro_handler")))
    await world.send_all()
    await world.smtp.stopped()  # the kept connection dies with the server
    await world.smtp.started()
    await world.process(received_alert(world))
    assert await world.send_all() == 3
    assert len(world.smtp.received) == 4


async def test_one_connection_carries_many_messages(world):
    await world.process(received_alert(world))
    await world.process(world.envelope(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress")))
    assert await world.send_all() == 5
    assert len({received.peer for received in world.smtp.received}) == 1


async def test_a_permanent_refusal_is_recorded_as_failed_visible_to_ops_and_can_be_resent(world):
    refused = world.address("ro_handler")
    world.smtp.recorder.refuse.add(refused)
    await world.process(received_alert(world))
    result = await world.send()
    assert (result.sent, result.failed) == (2, 1)
    [failed] = await world.deliveries(status=DeliveryStatus.failed)
    assert failed.recipient == refused
    assert (failed.last_error or "").startswith("550")

    world.tokens.add("commission", authority_roles=["commission"])
    async with api_client(world) as client:
        listed = (await client.get("/deliveries", params={"status": "failed"}, headers=COMMISSION)).json()
        assert [item["id"] for item in listed["items"]] == [failed.id]
        assert listed["items"][0]["last_error"].startswith("550")
        counts = (await client.get("/deliveries/counts", headers=COMMISSION)).json()["counts"]
        assert (counts["failed"], counts["sent"]) == (1, 2)

        world.smtp.recorder.refuse.clear()  # the mailbox exists again
        resent = await client.post(f"/deliveries/{failed.id}/resend", headers=COMMISSION)
        assert resent.status_code == 200, resent.text
        assert resent.json()["status"] == "queued"
        assert (await world.send()).sent == 1
        again = await client.post(f"/deliveries/{failed.id}/resend", headers=COMMISSION)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "not_failed"
        assert (await client.post("/deliveries/999999/resend", headers=COMMISSION)).status_code == 404

    [message] = world.smtp.messages_to(refused)
    assert message["Message-ID"] == failed.message_id


async def test_a_temporary_refusal_is_retried_with_backoff_not_failed(world):
    deferred = world.address("ro_handler")
    world.smtp.recorder.defer.add(deferred)
    await world.process(received_alert(world))
    result = await world.send()
    assert (result.sent, result.failed, result.retried) == (2, 0, 1)
    [waiting] = await world.deliveries(recipient=deferred)
    assert waiting.status == DeliveryStatus.queued and (waiting.last_error or "").startswith("450")

    world.smtp.recorder.defer.clear()
    world.clock.travel(timedelta(seconds=59))
    assert (await world.send()).claimed == 0  # IMI_NOTIFIER_RETRY_INITIAL (60 s here) not yet over
    world.clock.travel(timedelta(seconds=1))
    assert (await world.send()).sent == 1
    assert len(world.smtp.messages_to(deferred)) == 1


async def test_the_background_sender_sends_what_the_consumer_queued(world):
    async with world.app.router.lifespan_context(world.app):
        await world.process(received_alert(world))
        await wait_until(lambda: len(world.smtp.received) == 3, message="the alerts were not sent")

        async def all_marked_sent() -> bool:
            return {d.status for d in await world.mail()} == {DeliveryStatus.sent}

        await wait_until(all_marked_sent, message="the sent alerts were not marked")


async def test_sending_keeps_to_the_configured_rate(tmp_path, smtp):
    async with notifier_world(tmp_path, smtp, send_rate=20.0) as world:
        await world.process(received_alert(world))
        await world.process(world.envelope(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress")))
        started = time.monotonic()
        assert await world.send_all() == 5
        burst = notifier(world.runtime).burst  # a tenth of a second's worth may go at once
        assert burst == 2
        assert time.monotonic() - started >= (5 - burst) / 20


async def test_a_temporary_password_for_a_user_not_yet_known_waits_for_the_user(world):
    await world.add_authority("ro_college", "RO")
    state = world.user("ro_newbie", "ro_college", ["request_handler"], "ro")
    envelope = world.envelope(
        TEMPORARY_PASSWORD_ISSUED,
        TemporaryPassword(user_id=state.id, reason="new_user", sealed_password=seal(world.settings, "Tq7-vR2m")),
    )
    with pytest.raises(RecipientNotYetKnown):
        await world.process(envelope)  # the bus retries it after a delay; nothing was recorded
    assert await world.deliveries() == []

    await world.add_user("ro_newbie", "ro_college", ["request_handler"], "ro")
    assert await world.process(envelope) is True
    await world.send_all()
    assert len(world.smtp.messages_to(world.address("ro_newbie"))) == 1


async def test_an_event_redelivered_after_its_inbox_entry_was_pruned_sends_nothing_twice(world):
    envelope = received_alert(world)
    await world.process(envelope)
    await world.send_all()
    async with world.runtime.sessions() as session, session.begin():
        await session.execute(delete(messaging.inbox))  # IMI_INBOX_RETENTION has passed
    assert await world.process(envelope) is True
    assert await world.send_all() == 0
    assert len(world.smtp.received) == 3


async def test_a_graceful_stop_finishes_the_mail_in_hand_and_gives_the_rest_back(tmp_path, smtp):
    async with notifier_world(tmp_path, smtp, send_rate=5.0) as world:
        async with world.app.router.lifespan_context(world.app):
            await world.process(received_alert(world))
            await world.process(world.envelope(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress")))
            await wait_until(lambda: smtp.received, message="the sender did not start")
        statuses = [d.status for d in await world.mail()]
        assert DeliveryStatus.sending not in statuses  # nothing is left claimed by the stopped sender
        assert DeliveryStatus.queued in statuses
        await world.send_all()  # as the next start does, at once
        assert len(smtp.received) == 5
        assert len({r.message["Message-ID"] for r in smtp.received}) == 5
