"""Names an alert shows, in the recipient's language: countries (from the CLDR data Babel ships,
for all 26 working languages) and legislative areas."""

from __future__ import annotations

from functools import cache

from babel import Locale

from services.notifier.rendering import resolve_language


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
    """A legislative area's name (rule A4).

    The translated names are the registry's reference data, which the notifier cannot read; until
    they are shared (see the notifier's report), the code is written out as words
    (``professional_qualifications`` gives ``Professional qualifications``)."""
    del language  # the same words in every language until the translated names are shared
    words = code.replace("_", " ").strip()
    return words[:1].upper() + words[1:]
