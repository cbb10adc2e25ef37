"""Names an alert shows, in the recipient's language: countries (from the CLDR data Babel ships,
for all 26 working languages) and legislative areas (the shared reference data)."""

from __future__ import annotations

from functools import cache

from babel import Locale

from services.notifier.rendering import resolve_language
from shared.reference import legislative_area_name


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(resolve_language(language))


def country_name(code: str | None, language: str) -> str:
    """``RO`` as a reader of ``language`` writes it (``România``, ``Romania``, ``Rumänien``)."""
    if not code:
        return ""
    name = _locale(language).territories.get(code.upper())
    return str(name) if name else code.upper()


def area_name(code: str, language: str) -> str:
    """A legislative area's name in the recipient's language (rule A4)."""
    return legislative_area_name(code, resolve_language(language))
