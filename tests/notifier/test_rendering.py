"""The notifier's e-mail alerts: every kind in all 26 working languages (rule A5), the new-request
alert of rule E5, the temporary password of rule S11, and catalogues that stay complete and current."""

from __future__ import annotations

import datetime
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2 import UndefinedError

from services.notifier import rendering
from services.notifier.rendering import ALERT_KINDS, render_alert
from shared.languages import LANGUAGES, SOURCE_LANGUAGE

NOTIFIER_DIR = Path(rendering.__file__).parent
TEMPLATES_DIR = NOTIFIER_DIR / "templates"
LOCALES_DIR = NOTIFIER_DIR / "locales"
TRANSLATED_LANGUAGES = sorted(set(LANGUAGES) - {SOURCE_LANGUAGE})
REQUEST_KINDS = rendering.DIGEST_ITEM_KINDS  # the alerts about one request
# A few messages may legitimately read the same as in English; a copied catalogue may not.
MAX_SHARE_EQUAL_TO_ENGLISH = 0.1
PLACEHOLDER = re.compile(r"\{\w+\}|%\(\w+\)[sd]")


def alert_context(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "request_reference": "REQ-2026-000123",
        "legislative_area": "Services",
        "requesting_country": "Romania",
        "responding_country": "Finland",
        "authority_name": "Colegiul Medicilor din România",
        "forwarded_as_reference": "REQ-2026-000126",
        "reply_date": datetime.date(2026, 5, 12),
        "link": "https://imi.example.eu/requests/REQ-2026-000123",
        "temporary_password": "Tq7-vR2m",
        "items": [
            {
                "kind": "request_received",
                "request_reference": "REQ-2026-000124",
                "link": "https://imi.example.eu/r/124",
            },
            {"kind": "request_overdue", "request_reference": "REQ-2026-000125", "link": "https://imi.example.eu/r/125"},
        ],
    }
    context.update(overrides)
    return context


def read_catalogue(path: Path) -> Catalog:
    with path.open("rb") as po_file:
        return read_po(po_file)


def catalogue_of(language: str) -> Catalog:
    return read_catalogue(LOCALES_DIR / language / "LC_MESSAGES" / "messages.po")


def words(text: str) -> str:
    """The text with its line wrapping undone."""
    return " ".join(text.split())


def template_msgids() -> set[str]:
    return {message.id for message in read_catalogue(LOCALES_DIR / "messages.pot") if message.id}


def test_the_alert_kinds_are_the_ones_the_notifier_sends() -> None:
    assert set(ALERT_KINDS) == {
        "request_received",
        "request_allocated",
        "request_allocated_elsewhere",
        "request_approval_needed",
        "reply_approval_needed",
        "request_answered",
        "additional_information_requested",
        "request_forwarded",
        "request_questions_forwarded",
        "reply_date_proposed",
        "request_referred",
        "request_closed",
        "request_withdrawn",
        "request_overdue",
        "temporary_password",
        "account_locked",
        "account_locked_administrator",
        "registration_awaiting_validation",
        "digest",
    }
    for kind in ALERT_KINDS:
        assert (TEMPLATES_DIR / f"{kind}.txt.j2").is_file()
        assert (TEMPLATES_DIR / f"{kind}.html.j2").is_file()


@pytest.mark.parametrize("language", sorted(LANGUAGES))
@pytest.mark.parametrize("kind", ALERT_KINDS)
def test_every_alert_renders_in_every_working_language_rule_a5(kind: str, language: str) -> None:
    email = render_alert(kind, language, alert_context())

    assert email.subject.strip() and "\n" not in email.subject
    assert email.text.strip()
    assert f'<html lang="{language}">' in email.html
    for body in (email.subject, email.text, email.html):
        assert not PLACEHOLDER.search(body), body
    if kind in REQUEST_KINDS:
        assert "REQ-2026-000123" in email.subject
        assert "REQ-2026-000123" in email.text


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_every_catalogue_translates_every_message(language: str) -> None:
    catalogue = catalogue_of(language)
    messages = [message for message in catalogue if message.id]

    assert {message.id for message in messages} == template_msgids()
    assert not catalogue.obsolete
    for message in messages:
        assert not message.fuzzy, message.id
        assert isinstance(message.string, str) and message.string.strip(), message.id


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_translations_keep_every_placeholder(language: str) -> None:
    for message in catalogue_of(language):
        if message.id:
            assert sorted(PLACEHOLDER.findall(str(message.string))) == sorted(PLACEHOLDER.findall(str(message.id)))


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_no_catalogue_is_english_copied(language: str) -> None:
    messages = [message for message in catalogue_of(language) if message.id]
    copied = [message.id for message in messages if message.string == message.id]

    assert len(copied) <= MAX_SHARE_EQUAL_TO_ENGLISH * len(messages), copied


def test_no_catalogue_is_a_copy_of_another_language() -> None:
    """Each language really translated, not one catalogue copied into a neighbour (no from da, sk from cs)."""
    translated = {
        language: {message.id: message.string for message in catalogue_of(language) if message.id}
        for language in TRANSLATED_LANGUAGES
    }
    for first, second in itertools.combinations(TRANSLATED_LANGUAGES, 2):
        shared = [msgid for msgid, text in translated[first].items() if translated[second].get(msgid) == text]
        assert len(shared) <= MAX_SHARE_EQUAL_TO_ENGLISH * len(translated[first]), (first, second, shared)


def test_the_english_catalogue_leaves_every_message_to_its_source_text() -> None:
    messages = [message for message in catalogue_of(SOURCE_LANGUAGE) if message.id]

    assert {message.id for message in messages} == template_msgids()
    assert all(not message.string for message in messages)


def test_the_message_template_is_current_with_the_templates_and_subjects() -> None:
    with (LOCALES_DIR / "babel.cfg").open() as mapping_file:
        method_map, options_map = parse_mapping_cfg(mapping_file, "babel.cfg")

    extracted = {
        message
        for _filename, _lineno, message, _comments, _context in extract_from_dir(
            str(NOTIFIER_DIR), method_map, options_map, keywords=DEFAULT_KEYWORDS
        )
    }

    assert extracted == template_msgids()


def test_a_romanian_alert_is_written_in_romanian() -> None:
    email = render_alert("request_received", "ro", alert_context())

    assert email.subject == "A fost primită o nouă cerere: REQ-2026-000123"
    assert "Stimate utilizator IMI," in email.text
    assert "Autoritatea dumneavoastră a primit o nouă cerere" in words(email.text)
    assert "12 mai 2026" in email.text
    assert "Sistemul de informare al pieței interne" in words(email.text)


def test_a_finnish_alert_is_written_in_finnish() -> None:
    email = render_alert("request_answered", "fi", alert_context())

    assert email.subject == "Pyyntöönne REQ-2026-000123 on vastattu"
    assert "Hyvä IMI-käyttäjä" in email.text
    assert "Voitte nyt lukea vastauksen IMI-järjestelmässä." in words(email.text)
    assert "sisämarkkinoiden tietojärjestelmän" in words(email.text)


def test_a_new_request_alert_names_the_request_its_sender_and_reply_date_rule_e5() -> None:
    email = render_alert("request_received", "de", alert_context())

    assert email.subject == "Neues Ersuchen REQ-2026-000123 eingegangen"
    for expected in ("Colegiul Medicilor din România", "Romania", "Services", "12. Mai 2026"):
        assert expected in email.text
        assert expected in email.html
    assert "https://imi.example.eu/requests/REQ-2026-000123" in email.text
    assert 'href="https://imi.example.eu/requests/REQ-2026-000123"' in email.html


def test_the_temporary_password_mail_carries_the_password_escaped_in_html_rule_s11() -> None:
    email = render_alert("temporary_password", "en", alert_context(temporary_password='a<b&c"9'))

    assert 'a<b&c"9' in email.text
    assert "a&lt;b&amp;c&#34;9" in email.html
    assert "a<b&c" not in email.html


def test_the_temporary_password_mail_never_contains_a_user_name_rule_s11() -> None:
    user_name_variable = re.compile(r"user_?name|login_?name", re.IGNORECASE)
    for template in TEMPLATES_DIR.glob("*.j2"):
        code = re.sub(r"\{#.*?#\}", "", template.read_text(encoding="utf-8"), flags=re.DOTALL)
        variables = re.findall(r"\{\{(.*?)\}\}|\{%(.*?)%\}", code, flags=re.DOTALL)
        for expression in variables:
            assert not user_name_variable.search(" ".join(expression)), template.name

    with pytest.raises(ValueError, match="S11"):
        render_alert("temporary_password", "en", alert_context(user_name="jdoe42"))


def test_the_temporary_password_mail_tells_who_gives_the_user_name_rule_s11() -> None:
    email = render_alert("temporary_password", "en", alert_context())

    assert "your user name is never sent by e-mail" in words(email.text)
    assert "will tell you your user name in person or by phone" in words(email.text)


def test_the_locked_account_alert_for_administrators_links_to_the_users_and_names_nobody() -> None:
    link = "https://imi.example.eu/authorities/7c1e/users"
    email = render_alert("account_locked_administrator", "en", {"link": link})

    assert email.subject == "A user account of your authority has been blocked"
    assert "A user account of your authority has been blocked after five wrong login attempts." in words(email.text)
    assert (
        "As a local data administrator you can reset the user's password; the user then receives a new "
        "temporary password by e-mail. For security reasons this message does not name the user."
    ) in words(email.text)
    assert link in email.text
    assert f'href="{link}"' in email.html
    with pytest.raises(ValueError, match="S11"):
        render_alert("account_locked_administrator", "en", {"link": link, "user_name": "jdoe42"})


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_the_locked_account_alert_for_administrators_is_translated(language: str) -> None:
    link = "https://imi.example.eu/authorities/7c1e/users"
    english = render_alert("account_locked_administrator", "en", {"link": link})
    email = render_alert("account_locked_administrator", language, {"link": link})

    assert email.subject != english.subject
    english_lines = set(english.text.splitlines()) - {"", "-- ", link}
    assert not english_lines & set(email.text.splitlines())


def test_context_values_are_escaped_in_html() -> None:
    email = render_alert("request_received", "fr", alert_context(authority_name="<script>alert(1)</script>"))

    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<script>alert(1)</script>" in email.text


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        ("request_received", "request_reference"),
        ("request_received", "reply_date"),
        ("request_answered", "authority_name"),
        ("temporary_password", "temporary_password"),
        ("digest", "items"),
    ],
)
def test_a_missing_variable_raises(kind: str, missing: str) -> None:
    context = alert_context()
    del context[missing]

    with pytest.raises(UndefinedError):
        render_alert(kind, "en", context)


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_the_questions_forwarded_alert_names_the_authority_and_the_new_request_rule_e1(language: str) -> None:
    """Rule E1: the requesting side learns where some questions went and as which request; an event
    from an exchange that does not yet name the new request still tells what happened."""
    context = alert_context(authority_name="Ro Other Muu", forwarded_as_reference="REQ-2026-000126")
    email = render_alert("request_questions_forwarded", language, context)
    for body in (email.text, email.html):
        assert "Ro Other Muu" in body
        assert "REQ-2026-000126" in body
        assert "REQ-2026-000123" in body
    del context["forwarded_as_reference"]
    without = render_alert("request_questions_forwarded", language, context)
    assert "REQ-2026-000126" not in without.text + without.html
    assert "Ro Other Muu" in without.text


def test_an_unknown_kind_raises_key_error() -> None:
    with pytest.raises(KeyError):
        render_alert("request_teleported", "en", alert_context())


@pytest.mark.parametrize(("asked", "written"), [("xx", "en"), ("pt-BR", "pt"), ("de_AT", "de"), ("nb", "no")])
def test_the_language_falls_back_to_a_known_one(asked: str, written: str) -> None:
    email = render_alert("request_closed", asked, alert_context())

    assert f'<html lang="{written}">' in email.html
    assert email == render_alert("request_closed", written, alert_context())


def test_the_digest_lists_each_alert_in_the_recipients_language() -> None:
    email = render_alert("digest", "nl", alert_context())

    assert email.subject == "Uw dagelijkse overzicht van IMI-meldingen"
    for line in ("Nieuw verzoek REQ-2026-000124 ontvangen", "Antwoorddatum van verzoek REQ-2026-000125 overschreden"):
        assert line in email.text
        assert line in email.html
    assert 'href="https://imi.example.eu/r/125"' in email.html
    assert "https://imi.example.eu/r/124" in email.text


def test_a_temporary_password_is_never_summarised_in_a_digest_rule_s11() -> None:
    items = [{"kind": "temporary_password", "request_reference": "REQ-2026-000124", "link": "https://imi.example.eu/"}]

    with pytest.raises(ValueError):
        render_alert("digest", "en", alert_context(items=items))


@pytest.mark.parametrize("link", ["javascript:alert(1)", "/requests/REQ-2026-000123", "ftp://imi.example.eu/"])
def test_an_alert_links_only_to_an_absolute_web_address(link: str) -> None:
    with pytest.raises(ValueError):
        render_alert("request_received", "en", alert_context(link=link))
