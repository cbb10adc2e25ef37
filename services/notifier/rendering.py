"""The notifier's e-mail alerts, rendered in the recipient's working language (rules A5, S10).

Each alert kind has a plain-text and an HTML template in ``templates/`` (Jinja2 with the i18n
extension) and one subject in :data:`SUBJECTS`. The translations live in gettext catalogues,
``locales/<language>/LC_MESSAGES/messages.po``, read at run time with Babel: no compiled ``.mo``
file is kept in the repository. English is the source language: ``locales/en`` holds the same
messages with empty translations, so English text is always the message id itself.

Regenerate the template after changing a message (from ``services/notifier``)::

    pybabel extract -F locales/babel.cfg -o locales/messages.pot --add-comments=Translators: .
    pybabel update -i locales/messages.pot -d locales --no-fuzzy-matching

then translate every new message in all 25 catalogues; the tests fail until none is missing.

An alert carries no personal data of the persons concerned by a request (rules P1, P3) and never a
user name (rule S11): the variables a template may receive are exactly :data:`CONTEXT_KEYS`.
"""

from __future__ import annotations

import datetime
import gettext
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import Any, Final

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Undefined, UndefinedError, select_autoescape
from jinja2.filters import do_wordwrap

from shared.languages import LANGUAGE_CODES, SOURCE_LANGUAGE

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
LOCALES_DIR: Final = Path(__file__).parent / "locales"
DOMAIN: Final = "messages"


def N_(message: str) -> str:
    """Mark a message for extraction only; it is translated when an alert is rendered."""
    return message


# One subject per alert kind; for request alerts it is also the item's line in the daily digest.
SUBJECTS: Final[Mapping[str, str]] = {
    "request_received": N_("New request {reference} received"),
    "request_allocated": N_("Request {reference} allocated to you"),
    "request_allocated_elsewhere": N_("Request {reference} re-allocated to a colleague"),
    "request_approval_needed": N_("Request {reference} awaits your approval"),
    "reply_approval_needed": N_("Reply to request {reference} awaits your approval"),
    "request_answered": N_("Your request {reference} has been answered"),
    "additional_information_requested": N_("Additional information requested on request {reference}"),
    "request_forwarded": N_("Request {reference} forwarded"),
    "request_questions_forwarded": N_("Some questions of request {reference} forwarded"),
    "reply_date_proposed": N_("New reply date proposed for request {reference}"),
    "request_referred": N_("Request {reference} referred to the coordinators"),
    "request_closed": N_("Request {reference} closed"),
    "request_withdrawn": N_("Request {reference} withdrawn"),
    "request_overdue": N_("Request {reference} is overdue"),
    "temporary_password": N_("Your temporary IMI password"),
    "account_locked": N_("Your IMI account has been blocked"),
    "account_locked_administrator": N_("A user account of your authority has been blocked"),
    "registration_awaiting_validation": N_("New authority registration awaits validation"),
    "digest": N_("Your daily summary of IMI alerts"),
}

ALERT_KINDS: Final[tuple[str, ...]] = tuple(SUBJECTS)

# The alerts about one request, which a daily digest may list. A temporary password is never
# summarised in a digest: it travels only in its own e-mail (rule S11).
DIGEST_ITEM_KINDS: Final[frozenset[str]] = frozenset(kind for kind in ALERT_KINDS if "{reference}" in SUBJECTS[kind])

# Every variable a template may receive. Nothing here identifies a person concerned by a request
# (rule P1) and no user name ever reaches an e-mail (rule S11).
CONTEXT_KEYS: Final[frozenset[str]] = frozenset(
    {
        "request_reference",
        "legislative_area",
        "requesting_country",
        "responding_country",
        "authority_name",
        "forwarded_as_reference",
        "reply_date",
        "link",
        "temporary_password",
        "items",
    }
)

_LANGUAGE_ALIASES: Final[Mapping[str, str]] = {"nb": "no", "nn": "no"}


@dataclass(frozen=True)
class RenderedEmail:
    """One alert ready to send: its subject, a plain-text body and an HTML body."""

    subject: str
    text: str
    html: str


def resolve_language(language: str) -> str:
    """The working language to write in: ``language`` reduced to one of the 26 codes (rule A5),
    English when the system does not know it (``pt-BR`` gives ``pt``, ``xx`` gives ``en``)."""
    code = language.strip().replace("_", "-").split("-")[0].lower()
    code = _LANGUAGE_ALIASES.get(code, code)
    return code if code in LANGUAGE_CODES else SOURCE_LANGUAGE


def render_alert(kind: str, language: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render the alert ``kind`` in ``language`` from ``context``.

    Rule E5: a new request received is announced with ``request_received`` to the request
    handlers (or allocators) and the authority's address, each in their own language. Rule S11: the
    ``temporary_password`` alert carries the password and never the user name.

    Raises ``KeyError`` for an unknown kind, ``ValueError`` for a context key that is not an alert
    variable (see :data:`CONTEXT_KEYS`) or a link that is not an absolute http(s) URL, and
    ``jinja2.UndefinedError`` when the templates need a variable the context lacks. An unknown
    language falls back to English.
    """
    if kind not in SUBJECTS:
        raise KeyError(kind)
    _check_context(context)
    language = resolve_language(language)
    translations = _translations(language)
    subject = _subject(kind, context, translations)
    subject = " ".join(subject.split())  # one header line, whatever a reference holds
    variables = {**context, "language": language, "subject": subject}
    environment = _environment(language)
    text = environment.get_template(f"{kind}.txt.j2").render(variables)
    html = environment.get_template(f"{kind}.html.j2").render(variables)
    return RenderedEmail(subject=subject, text=_tidy_text(text), html=html)


def _check_context(context: Mapping[str, Any]) -> None:
    unknown = sorted(set(context) - CONTEXT_KEYS)
    if unknown:
        raise ValueError(
            f"not alert variables: {', '.join(unknown)}; an alert carries no personal data and no user name "
            "(rules P1, S11)"
        )
    if "link" in context:
        _check_link(context["link"])
    for item in context.get("items", ()):
        if item["kind"] not in DIGEST_ITEM_KINDS:
            raise ValueError(f"a daily digest cannot list a {item['kind']!r} alert")
        _check_link(item["link"])


def _check_link(link: object) -> None:
    if not isinstance(link, str) or not link.startswith(("https://", "http://")):
        raise ValueError(f"an alert links only to an absolute http(s) URL, not {link!r}")


def _subject(kind: str, context: Mapping[str, Any], translations: gettext.NullTranslations) -> str:
    message = SUBJECTS[kind]
    if "{reference}" not in message:
        return translations.gettext(message)
    if "request_reference" not in context:
        raise UndefinedError("'request_reference' is undefined")
    return _summary(translations, kind, context["request_reference"])


def _summary(translations: gettext.NullTranslations, kind: str, reference: object) -> str:
    """One line saying what happened to a request: an alert's subject, also a digest's item."""
    return translations.gettext(SUBJECTS[kind]).format(reference=reference)


def _long_date(language: str, value: object) -> str:
    """A date as the recipient's language writes it in full (``12. Mai 2026``)."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # a filter gets an undefined value instead of raising
    if not isinstance(value, datetime.date):
        raise TypeError(f"reply_date must be a datetime.date, not {type(value).__name__}")
    return _formatted_date(language, value)


@lru_cache(maxsize=4096)
def _formatted_date(language: str, value: datetime.date) -> str:
    # Babel takes a tenth of a millisecond a date; alerts of a day share a few reply dates.
    return format_date(value, format="long", locale=language)


def _tidy_text(text: str) -> str:
    lines = [line if line == "-- " else line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


@cache
def _translations(language: str) -> gettext.NullTranslations:
    """The language's catalogue, read from its .po file once per process; fuzzy and empty
    translations are left out, so their English message id is used."""
    path = LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language, domain=DOMAIN)
    mo_file = io.BytesIO()
    write_mo(mo_file, catalog)
    mo_file.seek(0)
    return gettext.GNUTranslations(mo_file)


def _remembered_wordwrap(environment: Environment) -> Callable[..., str]:
    """Jinja2's ``wordwrap`` filter, remembering what it wrapped: the paragraphs it wraps are mostly
    an alert's fixed text in one language, and wrapping took a third of a rendering."""
    wrap = lru_cache(maxsize=1024)(partial(do_wordwrap, environment))

    def wordwrap(text: str, *options: Any) -> str:
        return wrap(text, *options) if type(text) is str else do_wordwrap(environment, text, *options)

    return wordwrap


@cache
def _environment(language: str) -> Environment:
    """One Jinja2 environment per language, its gettext installed once (so renders never share a
    mutable language setting); HTML templates are autoescaped, a missing variable raises."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        extensions=["jinja2.ext.i18n"],
        autoescape=select_autoescape(["html", "html.j2"]),  # base.html.j2, <kind>.html.j2
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates ship with the code: no look at their files at each render
    )
    environment.policies["ext.i18n.trimmed"] = True
    translations = _translations(language)
    environment.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    environment.filters["long_date"] = partial(_long_date, language)
    environment.filters["wordwrap"] = _remembered_wordwrap(environment)
    environment.globals["alert_summary"] = partial(_summary, translations)
    return environment
