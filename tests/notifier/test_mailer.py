"""The message the SMTP server gets: every alert's subject, in every working language, reads back
exactly as written after the trip through RFC 2047 encoding and folding."""

from __future__ import annotations

import email
import email.policy
import io
from datetime import UTC, date, datetime
from email.generator import BytesGenerator

import pytest

from services.notifier.mailer import compose, valid_address
from services.notifier.rendering import ALERT_KINDS, RenderedEmail, render_alert
from shared.languages import LANGUAGES

REFERENCES = ("REQ-2026-000123", "REQ-2026-000123-WITH-A-LONGER-SUFFIX-THAN-USUAL")


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


def on_the_wire(subject: str) -> bytes:
    message = compose(
        RenderedEmail(subject=subject, text="text\n", html="<p>html</p>\n"),
        sender="IMI <no-reply@imi.example.eu>",
        recipient="someone@example.org",
        message_id="<0123456789abcdef0123456789abcdef@imi.notifier>",
        language="ro",
        date=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    )
    out = io.BytesIO()
    BytesGenerator(out, policy=email.policy.SMTP).flatten(message)  # as aiosmtplib writes it
    return out.getvalue()


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_subject_reads_back_as_written(language):
    for reference in REFERENCES:
        for kind in ALERT_KINDS:
            subject = render_alert(kind, language, context(reference)).subject
            raw = on_the_wire(subject)
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert parsed["Subject"] == subject
            assert parsed.defects == []
            assert max(len(line) for line in raw.split(b"\r\n")) <= 78


@pytest.mark.parametrize(
    ("address", "valid"),
    [("a@example.org", True), ("", False), ("no-at-sign", False), ("a@", False), ("a b@example.org", False)],
)
def test_only_an_address_is_given_to_the_server(address, valid):
    assert valid_address(address) is valid
