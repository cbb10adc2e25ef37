"""The 26 working languages of the system (rule A5): the 24 official EU languages plus
Icelandic and Norwegian for EEA users. English is the source language of all reference data."""

from typing import Final

SOURCE_LANGUAGE: Final = "en"

# ISO 639-1 code -> the language's own name for itself.
LANGUAGES: Final[dict[str, str]] = {
    "bg": "български",
    "cs": "čeština",
    "da": "dansk",
    "de": "Deutsch",
    "el": "ελληνικά",
    "en": "English",
    "es": "español",
    "et": "eesti",
    "fi": "suomi",
    "fr": "français",
    "ga": "Gaeilge",
    "hr": "hrvatski",
    "hu": "magyar",
    "it": "italiano",
    "lt": "lietuvių",
    "lv": "latviešu",
    "mt": "Malti",
    "nl": "Nederlands",
    "pl": "polski",
    "pt": "português",
    "ro": "română",
    "sk": "slovenčina",
    "sl": "slovenščina",
    "sv": "svenska",
    "is": "íslenska",
    "no": "norsk",
}

LANGUAGE_CODES: Final[frozenset[str]] = frozenset(LANGUAGES)
