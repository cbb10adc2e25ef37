"""Checks of codes against the reference data (rules A4, A5, S2, S3); each failure is a 422 with
its own error code and the offending field, raised before anything is written."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from services.registry import reference
from services.registry.schemas import Keywords
from shared.errors import ApiError
from shared.languages import LANGUAGE_CODES


def invalid(code: str, message: str, field: str) -> ApiError:
    return ApiError(422, code, message, field=field)


@cache
def country_codes() -> frozenset[str]:
    return frozenset(c.code for c in reference.countries())


@cache
def area_codes() -> frozenset[str]:
    return frozenset(a.code for a in reference.legislative_areas())


@cache
def keyword_codes(list_name: str) -> frozenset[str]:
    if list_name == "economic_activity":
        return frozenset(a.code for a in reference.economic_activities())
    if list_name == "policy_area":
        return frozenset(p.code for p in reference.policy_areas())
    return frozenset(k.code for k in reference.keywords(list_name))


def check_country(country: str, field: str = "country") -> None:
    if country not in country_codes():
        raise invalid("unknown_country", f"{country!r} is not an EEA country", field)


def check_language(language: str, field: str = "language") -> None:
    if language not in LANGUAGE_CODES:
        raise invalid("unknown_language", f"{language!r} is not one of the 26 languages", field)


def check_languages(languages: Iterable[str], field: str = "languages") -> None:
    for language in languages:
        check_language(language, field)


def check_area(area: str, field: str = "area") -> None:
    if area not in area_codes():
        raise invalid("unknown_legislative_area", f"{area!r} is not a legislative area", field)


def keyword_rows(keywords: Keywords, granted_areas: set[str]) -> set[tuple[str, str]]:
    """(list name, code) pairs, each checked: S2 lists always; an area's list (S3) only for an area
    the authority works in, and only that area's keywords."""
    rows: set[tuple[str, str]] = set()
    for list_name, codes, field in (
        ("economic_activity", keywords.economic_activities, "keywords.economic_activities"),
        ("policy_area", keywords.policy_areas, "keywords.policy_areas"),
    ):
        for code in codes:
            if code not in keyword_codes(list_name):
                raise invalid("unknown_keyword", f"{code!r} is not on the {list_name} list", field)
            rows.add((list_name, code))
    for area, codes in keywords.areas.items():
        check_area(area, f"keywords.areas.{area}")
        if area not in granted_areas:
            raise invalid("area_not_granted", f"the authority does not work in {area!r}", f"keywords.areas.{area}")
        for code in codes:
            if code not in keyword_codes(area):
                raise invalid("keyword_not_in_area", f"{code!r} is not a keyword of {area!r}", f"keywords.areas.{area}")
            rows.add((area, code))
    return rows
