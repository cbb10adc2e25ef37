"""Reference data more than one service needs: the legislative areas (rule A4) with their names in
all 26 languages. The registry owns the rest of its reference data; a new area is a data change."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from shared.languages import SOURCE_LANGUAGE

LEGISLATIVE_AREAS_FILE = Path(__file__).parent / "legislative_areas.json"


@cache
def _area_names() -> dict[str, dict[str, str]]:
    return {area["code"]: area["name"] for area in json.loads(LEGISLATIVE_AREAS_FILE.read_text(encoding="utf-8"))}


def legislative_area_name(code: str, language: str) -> str:
    """The area's name in ``language``, falling back to English, then to the code itself."""
    names = _area_names().get(code, {})
    return names.get(language) or names.get(SOURCE_LANGUAGE) or code
