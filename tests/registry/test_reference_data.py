"""The registry's reference data (rules A4, A5, S2, S3): complete, consistent and really translated."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.registry import reference
from shared.languages import LANGUAGES, SOURCE_LANGUAGE
from shared.reference import LEGISLATIVE_AREAS_FILE

REFERENCE_DIR = Path(reference.__file__).parent
# The legislative areas live in shared/reference (the notifier names them too): checked like the rest.
DATA_FILES = [*sorted(REFERENCE_DIR.rglob("*.json")), LEGISLATIVE_AREAS_FILE]
FILE_IDS = [
    path.name if path == LEGISLATIVE_AREAS_FILE else str(path.relative_to(REFERENCE_DIR)) for path in DATA_FILES
]
CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")

EU_MEMBER_STATES = {
    *("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE"),
    *("IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"),
}
EEA_ONLY = {"IS", "LI", "NO"}
SECTORAL_PROFESSIONS = [
    "doctor_of_medicine",
    "specialised_doctor",
    "general_practitioner",
    "nurse_responsible_for_general_care",
    "dental_practitioner",
    "specialised_dentist",
    "veterinary_surgeon",
    "midwife",
    "pharmacist",
    "architect",
]

# An untranslated copy of English must not pass. Per entry, at most this many of the 25 other
# languages may read exactly as English (official terms that truly are identical, e.g. fr "Culture")...
MAX_SAME_AS_ENGLISH_PER_ENTRY = 5
# ...except proper names that most languages write as English does.
PROPER_NAME_EXCEPTIONS = {("countries.json", "MT"), ("countries.json", "LI"), ("countries.json", "PT")}
# Per language and file, at most this share of the entries may read exactly as English (country
# names are mostly proper names, hence the higher share).
MAX_SAME_SHARE_PER_LANGUAGE = {"countries.json": 1 / 3}
DEFAULT_MAX_SAME_SHARE = 0.1


def _entries(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, list) and data, f"{path.name} must be a non-empty list"
    return data


def _names(path: Path, code: str) -> dict[str, str]:
    return next(entry["name"] for entry in _entries(path) if entry["code"] == code)


@pytest.mark.parametrize("path", DATA_FILES, ids=FILE_IDS)
def test_every_reference_entry_is_in_all_26_languages_rule_a5(path: Path) -> None:
    for entry in _entries(path):
        assert set(entry["name"]) == set(LANGUAGES), f"{path.name} {entry['code']}: languages differ"
        for language, text in entry["name"].items():
            assert isinstance(text, str) and text.strip() == text and text, (
                f"{path.name} {entry['code']} [{language}]: empty or padded name"
            )


@pytest.mark.parametrize("path", DATA_FILES, ids=FILE_IDS)
def test_reference_codes_are_unique_rule_a5(path: Path) -> None:
    codes = [entry["code"] for entry in _entries(path)]
    assert len(codes) == len(set(codes)), f"duplicate codes in {path.name}"


CODED_LISTS = [
    p for p in DATA_FILES if p.name in {"legislative_areas.json", "policy_areas.json"} or p.parent.name == "keywords"
]


@pytest.mark.parametrize("path", CODED_LISTS, ids=[p.name for p in CODED_LISTS])
def test_keyword_codes_are_lowercase_snake_case_ascii_rules_a4_s2_s3(path: Path) -> None:
    for entry in _entries(path):
        assert CODE.match(entry["code"]), f"{path.name}: bad code {entry['code']!r}"


@pytest.mark.parametrize("path", DATA_FILES, ids=FILE_IDS)
def test_no_entry_is_an_untranslated_copy_of_english_rule_a5(path: Path) -> None:
    entries = _entries(path)
    others = [language for language in LANGUAGES if language != SOURCE_LANGUAGE]
    for entry in entries:
        same = [lang for lang in others if entry["name"][lang] == entry["name"][SOURCE_LANGUAGE]]
        if (path.name, entry["code"]) not in PROPER_NAME_EXCEPTIONS:
            assert len(same) <= MAX_SAME_AS_ENGLISH_PER_ENTRY, f"{path.name} {entry['code']} reads as English in {same}"
    max_share = MAX_SAME_SHARE_PER_LANGUAGE.get(path.name, DEFAULT_MAX_SAME_SHARE)
    allowed = max(1, int(len(entries) * max_share))
    for language in others:
        same_codes = [e["code"] for e in entries if e["name"][language] == e["name"][SOURCE_LANGUAGE]]
        assert len(same_codes) <= allowed, f"{path.name} [{language}] is untranslated for {same_codes}"


def test_countries_are_the_27_member_states_and_iceland_liechtenstein_norway_rule_a5() -> None:
    countries = reference.countries()
    codes = {country.code for country in countries}
    assert len(countries) == 30
    assert codes == EU_MEMBER_STATES | EEA_ONLY
    assert "EL" not in codes and "UK" not in codes  # ISO 3166-1 codes, not the EU's own abbreviations


def test_country_languages_are_working_languages_rule_a5() -> None:
    by_code = {country.code: country for country in reference.countries()}
    for country in by_code.values():
        assert country.languages and set(country.languages) <= set(LANGUAGES), country.code
    assert by_code["BE"].languages == ("nl", "fr", "de")
    assert by_code["LU"].languages == ("fr", "de")
    assert by_code["IE"].languages == ("en", "ga")
    assert by_code["MT"].languages == ("mt", "en")
    assert by_code["LI"].languages == ("de",)
    assert by_code["IS"].languages == ("is",)
    assert by_code["NO"].languages == ("no",)
    every_language = {language for country in by_code.values() for language in country.languages}
    assert every_language == set(LANGUAGES), "every working language is some country's language"


def test_country_names_use_official_forms_rule_a5() -> None:
    by_code = {country.code: country for country in reference.countries()}
    assert by_code["RO"].name_in("ro") == "România"
    assert by_code["DE"].name_in("de") == "Deutschland"
    assert by_code["FR"].name_in("fr") == "France"
    assert by_code["GR"].name_in("el") == "Ελλάδα"
    assert by_code["IE"].name_in("ga") == "Éire"
    assert by_code["IS"].name_in("is") == "Ísland"
    assert by_code["NO"].name_in("no") == "Norge"
    assert by_code["NL"].name_in("pl") == "Niderlandy"
    assert by_code["PL"].name_in("pt") == "Polónia"  # European, not Brazilian, Portuguese


def test_legislative_areas_are_data_with_their_acts_rule_a4() -> None:
    areas = {area.code: area for area in reference.legislative_areas()}
    assert areas["professional_qualifications"].act == "Directive 2005/36/EC"
    assert areas["services"].act == "Directive 2006/123/EC"
    assert areas["professional_qualifications"].name_in("en") == "Professional qualifications"
    assert areas["professional_qualifications"].name_in("de") == "Berufsqualifikationen"
    assert areas["professional_qualifications"].name_in("fr") == "Qualifications professionnelles"
    assert areas["services"].name_in("de") == "Dienstleistungen"
    assert areas["services"].name_in("ro") == "Servicii"


def test_every_legislative_area_has_a_keyword_list_and_vice_versa_rules_a4_s3() -> None:
    area_codes = sorted(area.code for area in reference.legislative_areas())
    assert reference.keyword_areas() == area_codes
    for code in area_codes:
        assert reference.keywords(code), f"empty keyword list for {code}"


def test_unknown_legislative_area_has_no_keywords_rule_s3() -> None:
    with pytest.raises(KeyError):
        reference.keywords("no_such_area")


def test_professional_qualification_keywords_list_sectoral_professions_first_rule_s3() -> None:
    keywords = reference.keywords("professional_qualifications")
    sectoral = [keyword.code for keyword in keywords if keyword.sectoral]
    assert sectoral == SECTORAL_PROFESSIONS
    assert [keyword.code for keyword in keywords[: len(SECTORAL_PROFESSIONS)]] == SECTORAL_PROFESSIONS
    assert len(keywords) - len(sectoral) >= 40
    by_code = {keyword.code: keyword for keyword in keywords}
    assert by_code["doctor_of_medicine"].name_in("de") == "Arzt"
    assert by_code["doctor_of_medicine"].name_in("fr") == "Médecin"
    assert by_code["midwife"].name_in("sv") == "Barnmorska"


def test_services_keywords_are_not_sectoral_and_cover_the_directive_rule_s3() -> None:
    keywords = reference.keywords("services")
    assert len(keywords) >= 30
    assert not any(keyword.sectoral for keyword in keywords)
    codes = {keyword.code for keyword in keywords}
    assert {"construction", "real_estate_agency", "retail_trade", "car_rental", "event_organisation"} <= codes


def test_nace_has_21_sections_and_88_divisions_with_valid_parents_rule_s2() -> None:
    activities = reference.economic_activities()
    sections = [a for a in activities if a.level == "section"]
    divisions = [a for a in activities if a.level == "division"]
    assert [s.code for s in sections] == [chr(c) for c in range(ord("A"), ord("U") + 1)]
    assert all(s.parent is None for s in sections)
    assert len(divisions) == 88
    assert all(re.fullmatch(r"\d\d", d.code) for d in divisions)
    section_codes = {s.code for s in sections}
    assert all(d.parent in section_codes for d in divisions)
    parent = {d.code: d.parent for d in divisions}
    expected = {"01": "A", "10": "C", "33": "C", "35": "D", "62": "J", "84": "O", "99": "U"}
    assert {code: parent[code] for code in expected} == expected
    assert {d.parent for d in divisions} == section_codes, "every section has a division"
    missing = {"04", "34", "40", "44", "48", "54", "57", "67", "76", "83", "89"}
    assert not missing & set(parent), "NACE Rev. 2 has no such divisions"


def test_nace_titles_are_the_official_ones_rule_s2() -> None:
    by_code = {a.code: a for a in reference.economic_activities()}
    assert by_code["A"].name_in("en") == "Agriculture, forestry and fishing"
    assert by_code["A"].name_in("de") == "Land- und Forstwirtschaft, Fischerei"
    assert by_code["A"].name_in("fr") == "Agriculture, sylviculture et pêche"
    assert by_code["F"].name_in("it") == "Costruzioni"
    assert by_code["86"].name_in("en") == "Human health activities"
    assert by_code["85"].name_in("es") == "Educación"


def test_policy_areas_are_about_thirty_rule_s2() -> None:
    areas = {area.code: area for area in reference.policy_areas()}
    assert 25 <= len(areas) <= 40
    assert {"public_health", "internal_market", "consumer_protection", "environment", "taxation"} <= set(areas)
    assert areas["public_health"].name_in("de") == "Öffentliche Gesundheit"


def test_name_in_falls_back_to_english_rule_a5() -> None:
    country = reference.countries()[0]
    assert country.name_in("xx") == country.name["en"]
