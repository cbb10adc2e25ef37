"""The multilingual directory (rule S1, "Search"): every user, basic users included (rule S9), finds
authorities of every country by what they do, in any language, and reads them in their own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.registry.directory import DirectoryPage, search
from services.registry.models import Level
from services.registry.reference import countries, legislative_areas
from services.registry.routes.refusals import signed_in
from shared.auth import CurrentPrincipal
from shared.errors import ApiError, Refusal
from shared.languages import LANGUAGE_CODES, SOURCE_LANGUAGE
from shared.service import Runtime

router = APIRouter(tags=["directory"])


@router.get(
    "/directory/authorities",
    response_model=DirectoryPage,
    summary="Search the directory of authorities",
    description=(
        "Free text over official names, informal names and profiles in every language and over the "
        "names of keywords and legislative areas in all 26 languages; accent- and case-insensitive; "
        "every word is matched as the start of a word and all must match. Filters combine with AND. "
        "Only active authorities. Results are ranked (a name match first), or listed by informal name "
        "without text, and shown in `lang` (by default the caller's preferred language) where a "
        "translation exists (`translated: false` otherwise)."
    ),
    responses=signed_in(
        Refusal(422, "unknown_country", "country must be the code of an EEA country", field="country"),
        Refusal(422, "unknown_legislative_area", "area must be a legislative area code", field="area"),
        Refusal(422, "unknown_language", "lang must be one of the 26 working languages", field="lang"),
    ),
)
async def search_authorities(
    runtime: Runtime,
    principal: CurrentPrincipal,
    q: Annotated[str | None, Query(max_length=200, description="Words to find, in any language")] = None,
    country: Annotated[str | None, Query(description="An EEA country code, e.g. AT")] = None,
    region: Annotated[str | None, Query(max_length=200, description="The region, exactly as registered")] = None,
    level: Annotated[Level | None, Query(description="national, regional or local")] = None,
    area: Annotated[str | None, Query(description="A legislative area code, e.g. services")] = None,
    lang: Annotated[
        str | None,
        Query(description="The language to show results in (one of the 26); by default the caller's preferred one"),
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DirectoryPage:
    if country is not None:
        country = country.upper()
        if country not in {c.code for c in countries()}:
            raise ApiError(422, "unknown_country", "country must be the code of an EEA country", field="country")
    if area is not None and area not in {a.code for a in legislative_areas()}:
        raise ApiError(422, "unknown_legislative_area", "area must be a legislative area code", field="area")
    if lang is None:
        # The token carries the user's preferred working language (rule S10).
        lang = principal.language if principal.language in LANGUAGE_CODES else SOURCE_LANGUAGE
    lang = lang.lower()
    if lang not in LANGUAGE_CODES:
        raise ApiError(422, "unknown_language", "lang must be one of the 26 working languages", field="lang")
    async with runtime.sessions() as session:
        return await search(
            session,
            text=q,
            country=country,
            region=region,
            level=level.value if level is not None else None,
            area=area,
            language=lang,
            page=page,
            page_size=page_size,
        )
