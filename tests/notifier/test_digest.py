"""Users who chose the digest get no single request alerts but one summary a day, at the digest hour
on the service's clock, listing the day's alerts in their language."""

from __future__ import annotations

from datetime import timedelta

from services.notifier.digest import compose_digests, latest_digest_moment
from services.notifier.models import DeliveryStatus
from services.notifier.rendering import render_alert
from shared.contracts import exchange
from shared.contracts.registry import TEMPORARY_PASSWORD_ISSUED, TemporaryPassword
from shared.sealing import seal
from tests.notifier.world import PUBLIC_URL, START, body

DIGEST_TIME = START.replace(hour=17)


async def test_digest_users_get_one_daily_summary_not_single_alerts(world):
    await world.add_user("ro_handler", "ro_college", ["request_handler"], "ro", digest=True)
    received = world.change("r1", actor="fi_board")
    overdue = world.change("r2", state="in_progress")
    await world.deliver(exchange.REQUEST_RECEIVED, received)
    await world.deliver(exchange.REQUEST_OVERDUE, overdue)
    await world.send_all()
    assert world.address("ro_handler") not in world.recipients()  # no single alerts
    assert world.address("ro_handler_de") in world.recipients()  # the others get theirs at once
    assert await compose_digests(world.runtime) == 0  # not before the digest hour

    world.clock.travel(DIGEST_TIME - START)
    assert await compose_digests(world.runtime) == 1
    assert await compose_digests(world.runtime) == 0  # once a day
    await world.send_all()

    [summary] = world.smtp.messages_to(world.address("ro_handler"))
    expected = render_alert(
        "digest",
        "ro",
        {
            "items": [
                {
                    "kind": "request_received",
                    "request_reference": received.reference,
                    "link": f"{PUBLIC_URL}/requests/{received.request_id}",
                },
                {
                    "kind": "request_overdue",
                    "request_reference": overdue.reference,
                    "link": f"{PUBLIC_URL}/requests/{overdue.request_id}",
                },
            ],
            "link": f"{PUBLIC_URL}/",
        },
    )
    assert summary["Subject"] == expected.subject
    assert body(summary, "plain") == expected.text
    held = await world.deliveries(user_id=world.users["ro_handler"])
    assert sorted(d.status for d in held) == ["digested", "digested", "sent"]


async def test_alerts_after_the_digest_hour_wait_for_the_next_days_summary(world):
    await world.add_user("ro_handler", "ro_college", ["request_handler"], "ro", digest=True)
    world.clock.travel(DIGEST_TIME - START + timedelta(minutes=5))
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    assert await compose_digests(world.runtime) == 0
    world.clock.travel(timedelta(days=1))
    assert await compose_digests(world.runtime) == 1


async def test_a_temporary_password_is_never_held_for_a_digest_rule_s11(world):
    await world.add_user("ro_handler", "ro_college", ["request_handler"], "ro", digest=True)
    await world.deliver(
        TEMPORARY_PASSWORD_ISSUED,
        TemporaryPassword(
            user_id=world.users["ro_handler"], reason="reset", sealed_password=seal(world.settings, "pw")
        ),
    )
    [delivery] = await world.mail()
    assert delivery.status == DeliveryStatus.queued
    assert await world.send_all() == 1


def test_the_digest_moment_is_the_last_digest_hour_passed():
    assert latest_digest_moment(DIGEST_TIME, 17) == DIGEST_TIME
    assert latest_digest_moment(DIGEST_TIME - timedelta(seconds=1), 17) == DIGEST_TIME - timedelta(days=1)
