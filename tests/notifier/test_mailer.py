"""The message the SMTP server gets: every alert, in every working language, reads back with the
email package exactly as rendered (subject, both bodies, headers), 7-bit and within RFC 5322's line
lengths, whatever its script."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

from services.notifier.mailer import compose, valid_address
from services.notifier.rendering import ALERT_KINDS, RenderedEmail, render_alert
from shared.languages import LANGUAGES
from tests.notifier.world import parse_strictly

REFERENCES = ("REQ-2026-000123", "REQ-2026-000123-WITH-A-LONGER-SUFFIX-THAN-USUAL")
MESSAGE_ID = "<0123456789abcdef0123456789abcdef@imi.notifier>"
SENT_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def context(reference: str) -> dict:
    return {
        "request_reference": reference,
        "legislative_area": "Services",
        "requesting_country": "România",
        "responding_country": "Suomi",
        "authority_name": "Colegiul Medicilor din România",
        "reply_date": date(2026, 5, 12),
        "link": "https://imi.example.eu/requests/1",
        "temporary_password": "Tq7-vR2m",
        "items": [{"kind": "request_received", "request_reference": reference, "link": "https://imi.example.eu/r/1"}],
    }


def on_the_wire(
    rendered: RenderedEmail, *, sender: str = "IMI <no-reply@imi.example.eu>", to: str = "a@example.org"
) -> bytes:
    return compose(rendered, sender=sender, recipient=to, message_id=MESSAGE_ID, language="ro", date=SENT_AT)


def read_back(raw: bytes) -> EmailMessage:
    return parse_strictly(raw)


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    content: str = part.get_content()
    return content.replace("\r\n", "\n")


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_alert_reads_back_exactly_as_rendered(language):
    for reference in REFERENCES:
        for kind in ALERT_KINDS:
            rendered = render_alert(kind, language, context(reference))
            raw = on_the_wire(rendered)
            message = read_back(raw)
            assert message["Subject"] == rendered.subject
            assert body(message, "plain") == rendered.text
            assert body(message, "html") == rendered.html
            assert raw.isascii()  # 7-bit: any server takes it
            assert max(len(line) for line in raw.split(b"\r\n")) <= 78
            assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only


def test_the_headers_say_who_what_when_and_that_no_one_should_answer():
    message = read_back(on_the_wire(render_alert("request_received", "de", context(REFERENCES[0]))))
    assert message["Message-ID"] == MESSAGE_ID
    assert parsedate_to_datetime(message["Date"]) == SENT_AT
    assert message["From"].addresses[0].addr_spec == "no-reply@imi.example.eu"
    assert message["From"].addresses[0].display_name == "IMI"
    assert [a.addr_spec for a in message["To"].addresses] == ["a@example.org"]
    assert message["Content-Language"] == "ro"
    assert message["Auto-Submitted"] == "auto-generated"  # RFC 3834
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in message.iter_parts())


def test_a_plain_ascii_body_goes_as_it_is_and_others_in_the_shorter_encoding():
    ascii_only = read_back(on_the_wire(RenderedEmail("Hello", "Short lines.\n", "<p>html</p>\n")))
    assert [part["Content-Transfer-Encoding"] for part in ascii_only.iter_parts()] == ["7bit", "7bit"]
    greek = "Αίτημα " * 200 + "\n"
    latin = "Die Anfrage wurde an die zuständige Behörde übermittelt. " * 20 + "\n"
    mixed = read_back(on_the_wire(RenderedEmail("Hello", greek, latin)))
    assert [part["Content-Transfer-Encoding"] for part in mixed.iter_parts()] == ["base64", "quoted-printable"]
    assert body(mixed, "plain") == greek and body(mixed, "html") == latin


def test_a_sender_name_beyond_ascii_is_encoded():
    sender = "Système d'information du marché intérieur de la Commission européenne <no-reply@imi.example.eu>"
    raw = on_the_wire(RenderedEmail("Hello", "text\n", "<p>html</p>\n"), sender=sender)
    assert raw.isascii()
    parsed = read_back(raw)["From"].addresses[0]
    assert parsed.display_name == "Système d'information du marché intérieur de la Commission européenne"
    assert parsed.addr_spec == "no-reply@imi.example.eu"


def test_a_recipient_beyond_ascii_is_written_as_it_is_for_smtputf8():
    raw = on_the_wire(RenderedEmail("Hello", "text\n", "<p>html</p>\n"), to="jürgen@example.de")
    parsed = email.message_from_string(raw.decode("utf-8"), policy=email.policy.SMTPUTF8)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["jürgen@example.de"]


@pytest.mark.parametrize("recipient", ["a@example.org\r\nBcc: b@example.org", "a@example.org\nX: y"])
def test_no_header_can_be_smuggled_in_through_an_address(recipient):
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        on_the_wire(RenderedEmail("Hello", "text\n", "<p>html</p>\n"), to=recipient)


@pytest.mark.parametrize(
    ("address", "valid"),
    [("a@example.org", True), ("", False), ("no-at-sign", False), ("a@", False), ("a b@example.org", False)],
)
def test_only_an_address_is_given_to_the_server(address, valid):
    assert valid_address(address) is valid
