"""The registry's EU-wide reference data, shipped as JSON files beside this module and loaded once.

- ``countries.json``: the EEA countries and their official languages (rule A5).
- ``shared/reference/legislative_areas.json``: the legislative areas and their acts (rule A4), shared
  because the notifier names them in e-mails. A new area is a data
  change only: one more entry here plus ``keywords/<area code>.json``; no code changes.
- ``economic_activities.json`` and ``policy_areas.json``: the two EU-wide competence keyword lists
  (rule S2): NACE Rev. 2 sections and divisions, and EU policy areas.
- ``keywords/<area code>.json``: each legislative area's own keyword list (rule S3).

Every name is given in all 26 working languages of ``shared.languages.LANGUAGES`` (rule A5),
English being the source language.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter

from shared.languages import SOURCE_LANGUAGE
from shared.reference import LEGISLATIVE_AREAS_FILE

REFERENCE_DIR = Path(__file__).parent
KEYWORDS_DIR = REFERENCE_DIR / "keywords"

T = TypeVar("T")


class _Named(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    name: dict[str, str]

    def name_in(self, language: str) -> str:
        """The name in ``language``, falling back to the English source text (rule A5)."""
        return self.name.get(language) or self.name[SOURCE_LANGUAGE]


class Country(_Named):
    """An EEA country (rule A5): ISO 3166-1 alpha-2 code and its official languages among the 26."""

    languages: tuple[str, ...]


class LegislativeArea(_Named):
    """A legislative area and the act it implements (rule A4)."""

    act: str


class EconomicActivity(_Named):
    """A NACE Rev. 2 section (A-U) or division (01-99), a competence keyword (rule S2)."""

    level: Literal["section", "division"]
    parent: str | None


class PolicyArea(_Named):
    """An EU policy area, a competence keyword (rule S2)."""


class Keyword(_Named):
    """A keyword of one legislative area's list (rule S3); ``sectoral`` marks the professions with
    automatic recognition under Directive 2005/36/EC."""

    sectoral: bool


def _load(adapter: TypeAdapter[list[T]], path: Path) -> tuple[T, ...]:
    return tuple(adapter.validate_python(json.loads(path.read_text(encoding="utf-8"))))


@cache
def countries() -> tuple[Country, ...]:
    """The 30 EEA countries (rule A5)."""
    return _load(TypeAdapter(list[Country]), REFERENCE_DIR / "countries.json")


@cache
def legislative_areas() -> tuple[LegislativeArea, ...]:
    """The legislative areas, read from data so that a new area needs no code change (rule A4)."""
    return _load(TypeAdapter(list[LegislativeArea]), LEGISLATIVE_AREAS_FILE)


@cache
def economic_activities() -> tuple[EconomicActivity, ...]:
    """NACE Rev. 2 sections and divisions, sections first (rule S2)."""
    return _load(TypeAdapter(list[EconomicActivity]), REFERENCE_DIR / "economic_activities.json")


@cache
def policy_areas() -> tuple[PolicyArea, ...]:
    """The EU policy areas (rule S2)."""
    return _load(TypeAdapter(list[PolicyArea]), REFERENCE_DIR / "policy_areas.json")


def keyword_areas() -> list[str]:
    """Codes of the legislative areas that have a keyword list (rule S3), in file-name order."""
    return sorted(path.stem for path in KEYWORDS_DIR.glob("*.json"))


@cache
def keywords(area_code: str) -> tuple[Keyword, ...]:
    """The keyword list of one legislative area (rule S3); ``KeyError`` for an unknown area."""
    if area_code not in keyword_areas():
        raise KeyError(area_code)
    return _load(TypeAdapter(list[Keyword]), KEYWORDS_DIR / f"{area_code}.json")
