"""Rule S11: a user name is never e-mailed and the notifier never holds one; the temporary password
reaches its user alone, is kept only sealed and only until sent, and no e-mail body is stored.
And every message is a well-formed RFC 5322 multipart/alternative e-mail."""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parsedate_to_datetime

from sqlalchemy import inspect, select

from services.notifier.models import DeliveryStatus, metadata
from services.notifier.rendering import render_alert
from shared.contracts import exchange
from shared.contracts.registry import (
    AUTHORITY_REGISTERED,
    TEMPORARY_PASSWORD_ISSUED,
    USER_LOCKED,
    TemporaryPassword,
    UserLocked,
)
from shared.sealing import seal
from tests.notifier.world import PUBLIC_URL, NotifierWorld, body, parse_strictly

PASSWORD = "Tq7-vR2m#k9"
MESSAGE_ID = re.compile(r"^<[0-9a-f]{32}@imi\.notifier>$")


async def every_kind_of_mail(world: NotifierWorld) -> None:
    """Alerts of many kinds, to users whose names the registry knows (``Name of <user>``)."""
    await world.add_user("ro_digest", "ro_college", ["request_handler"], "ro", digest=True, full_name="Ileana Digest")
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    await world.deliver(exchange.REQUEST_ANSWERED, world.change(state="answered", actor="ro_college"))
    await world.deliver(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress"))
    await world.deliver(
        USER_LOCKED, UserLocked(user_id=world.users["ro_handler"], authority_id=world.authorities["ro_college"])
    )
    await world.deliver(
        TEMPORARY_PASSWORD_ISSUED,
        TemporaryPassword(
            user_id=world.users["fi_handler2"], reason="reset", sealed_password=seal(world.settings, PASSWORD)
        ),
    )
    await world.deliver(
        AUTHORITY_REGISTERED,
        world.authority("ro_new", "RO", status="pending_validation", registered_by="ro_coordinator"),
    )
    world.clock.travel(timedelta(hours=8))  # past the digest hour
    from services.notifier.digest import compose_digests

    assert await compose_digests(world.runtime) == 1
    await world.send_all()


async def database_text(world: NotifierWorld) -> str:
    """Every value of every row of every notifier table, as text."""
    values = []
    async with world.runtime.sessions() as session:
        for table in metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                values.extend(str(value) for value in row)
    return "\n".join(values)


async def test_no_user_name_appears_in_any_email_rule_s11(world):
    await every_kind_of_mail(world)
    kinds = {d.kind for d in await world.mail()}
    assert {
        "request_received",
        "request_answered",
        "account_locked",
        "account_locked_administrator",
        "temporary_password",
        "digest",
    } <= kinds
    names = [f"Name of {user}" for user in world.users] + ["Ileana Digest"]
    for received in world.smtp.received:
        message = received.message
        text = "\n".join([received.content.decode("ascii"), body(message, "plain"), body(message, "html")])
        for name in names:
            assert name not in text


async def test_the_notifier_keeps_no_user_name_rule_s11(world):
    async with world.runtime.engine.connect() as connection:
        columns = await connection.run_sync(
            lambda sync: {
                (table, column["name"])
                for table in inspect(sync).get_table_names()
                for column in inspect(sync).get_columns(table)
            }
        )
    names = {column for _, column in columns}
    assert not names & {"name", "username", "user_name", "full_name", "login"}
    assert not [column for column in names if "username" in column]
    await every_kind_of_mail(world)
    stored = await database_text(world)
    assert "Name of" not in stored and "Ileana Digest" not in stored


async def test_the_temporary_password_email_carries_the_password_and_never_the_user_name_rule_s11(world, tmp_path):
    sealed = seal(world.settings, PASSWORD)
    await world.deliver(
        TEMPORARY_PASSWORD_ISSUED,
        TemporaryPassword(user_id=world.users["ro_handler"], reason="new_user", sealed_password=sealed),
    )
    [queued] = await world.mail()
    assert queued.sealed_secret == sealed  # only sealed, only until sent
    assert PASSWORD not in await database_text(world)

    assert await world.send_all() == 1
    [message] = world.smtp.messages_to(world.address("ro_handler"))
    expected = render_alert("temporary_password", "ro", {"temporary_password": PASSWORD, "link": f"{PUBLIC_URL}/login"})
    assert message["Subject"] == expected.subject
    assert body(message, "plain") == expected.text
    assert PASSWORD in body(message, "plain")
    assert "Name of ro_handler" not in message.as_string() and "ro_handler" not in body(message, "plain")

    [sent] = await world.mail()
    assert sent.status == DeliveryStatus.sent
    assert sent.sealed_secret is None  # wiped with the sending
    stored = await database_text(world)
    assert PASSWORD not in stored and sealed not in stored
    for path in tmp_path.glob("notifier.db*"):
        assert PASSWORD.encode() not in path.read_bytes()


async def test_every_message_is_a_valid_rfc_5322_multipart_alternative_email(world):
    await every_kind_of_mail(world)
    assert len(world.smtp.received) >= 8
    for received in world.smtp.received:
        message = parse_strictly(received.content)  # policy strict, no defect anywhere
        for header in ("Message-ID", "Date", "From", "To", "Subject"):
            assert message[header], f"{header} missing"
        assert MESSAGE_ID.match(message["Message-ID"])
        assert parsedate_to_datetime(message["Date"]) == world.clock.now()
        assert message["From"].addresses[0].addr_spec == "no-reply@imi.example.eu"
        assert [a.addr_spec for a in message["To"].addresses] == received.rcpt_tos
        assert message["Auto-Submitted"] == "auto-generated"
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        assert all(part.get_content_charset() == "utf-8" for part in message.iter_parts())
        lines = received.content.split(b"\r\n")
        assert max(len(line) for line in lines) <= 998  # RFC 5322 2.1.1
        assert received.content.isascii()  # 7-bit clean: any server takes it
