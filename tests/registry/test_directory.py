"""The multilingual directory (rule S1, "Search"): a user who does not speak an authority's language
and does not know that country's administration still finds it. Every user may search (rule S9).

Each search test runs on SQLite (FTS5) and on PostgreSQL (tsvector and trigrams), through the HTTP
API and through ``search()``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import create_app, load_definition
from services.registry.directory import DirectoryPage, document_for, fold, index_authority, reindex_all, search
from services.registry.models import (
    Authority,
    AuthorityArea,
    AuthorityKeyword,
    AuthorityKind,
    AuthorityStatus,
    AuthorityTranslation,
    DirectoryDocument,
    Level,
    TranslationStatus,
)
from services.registry.reference import keywords, legislative_areas
from shared.auth import InvalidToken, Principal
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.clock import FrozenClock
from shared.migrations import upgrade
from shared.settings import Settings
from tests.conftest import PostgresDatabases

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKEN = {"Authorization": "Bearer test"}


def keyword_name(area: str, code: str, language: str) -> str:
    return next(k for k in keywords(area) if k.code == code).name[language]


class FixedVerifier:
    """Accepts the token "test" as a basic user of a Finnish authority (rule S9: anyone may search)."""

    principal = Principal.model_validate(
        {"sub": str(uuid.uuid4()), "authority": str(uuid.uuid4()), "country": "FI", "language": "fi"}
    )

    async def verify(self, token: str) -> Principal:
        if token != "test":
            raise InvalidToken("unknown test token")
        return self.principal


def _authority(
    *,
    country: str,
    level: Level,
    region: str | None,
    official: str,
    language: str,
    informal: str,
    profile: str,
    translations: dict[str, tuple[str, str]] | None = None,
    keywords: list[tuple[str, str]] | None = None,
    areas: list[str] | None = None,
    status: AuthorityStatus = AuthorityStatus.active,
) -> Authority:
    authority_id = uuid.uuid4()
    return Authority(
        id=authority_id,
        kind=AuthorityKind.competent_authority,
        country=country,
        level=level,
        region=region,
        official_name=official,
        language=language,
        informal_name=informal,
        profile=profile,
        status=status,
        created_at=NOW,
        updated_at=NOW,
        translations=[
            AuthorityTranslation(
                language=lang,
                informal_name=name,
                profile=text,
                status=TranslationStatus.current,
                translated_at=NOW,
                translated_by="translator",
            )
            for lang, (name, text) in (translations or {}).items()
        ],
        keywords=[AuthorityKeyword(list_name=list_name, code=code) for list_name, code in keywords or []],
        areas=[AuthorityArea(area=area, granted_at=NOW) for area in areas or []],
    )


PQ = "professional_qualifications"


def seed() -> dict[str, Authority]:
    return {
        "wien": _authority(
            country="AT",
            level=Level.regional,
            region="Wien",
            official="Ärztekammer für Wien",
            language="de",
            informal="Ärztekammer Wien",
            profile="Vertretung der Ärztinnen und Ärzte in Wien; führt die Ärzteliste.",
            translations={"en": ("Vienna Medical Chamber", "Professional body of the doctors of Vienna.")},
            keywords=[(PQ, "specialised_doctor")],
            areas=[PQ],
        ),
        "cluj": _authority(
            country="RO",
            level=Level.regional,
            region="Cluj",
            official="Colegiul Medicilor din Cluj",
            language="ro",
            informal="Colegiul Medicilor Cluj",
            profile="Organizație profesională; avizează exercitarea profesiei în județul Cluj.",
            translations={"en": ("Cluj College of Physicians", "Professional body for the medical profession.")},
            keywords=[(PQ, "doctor_of_medicine"), ("economic_activity", "86")],
            areas=[PQ],
        ),
        "ministry": _authority(
            country="RO",
            level=Level.national,
            region=None,
            official="Ministerul Sănătății",
            language="ro",
            informal="Ministerul Sănătății",
            profile="Autoritatea statului pentru sănătate publică; supraveghează Colegiul Medicilor din România.",
            keywords=[("policy_area", "public_health")],
            areas=[PQ, "services"],
        ),
        "paris": _authority(
            country="FR",
            level=Level.national,
            region=None,
            official="Conseil national de l'Ordre des médecins",
            language="fr",
            informal="Ordre des médecins",
            profile="Inscription au tableau de l'Ordre.",
            areas=[PQ],
        ),
        "graz": _authority(
            country="AT",
            level=Level.local,
            region="Steiermark",
            official="Magistrat Graz – Gewerbeamt",
            language="de",
            informal="Gewerbeamt Graz",
            profile="Gewerbeanmeldungen und Betriebsanlagen.",
            keywords=[("services", "construction")],
            areas=["services"],
        ),
        "athens": _authority(
            country="GR",
            level=Level.regional,
            region="Αττική",
            official="Ιατρικός Σύλλογος Αθηνών",
            language="el",
            informal="Ιατρικός Σύλλογος Αθηνών",
            profile="Επαγγελματικός φορέας των ιατρών της Αθήνας.",
            areas=[PQ],
        ),
        # Not validated yet: never found, whatever it carries (rule A2).
        "pending": _authority(
            country="AT",
            level=Level.regional,
            region="Kärnten",
            official="Ärztekammer für Kärnten",
            language="de",
            informal="Ärztekammer Kärnten",
            profile="Vertretung der Ärzte in Kärnten.",
            keywords=[(PQ, "doctor_of_medicine")],
            areas=[PQ],
            status=AuthorityStatus.pending_validation,
        ),
    }


ACTIVE = {"wien", "cluj", "ministry", "paris", "graz", "athens"}


@dataclass
class Directory:
    backend: str
    app: FastAPI
    client: httpx.AsyncClient
    ids: dict[str, uuid.UUID]

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = self.app.state.runtime.sessions
        return sessions

    def keys(self, page: DirectoryPage) -> list[str]:
        by_id = {value: key for key, value in self.ids.items()}
        return [by_id.get(item.id, str(item.id)) for item in page.items]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def directory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Directory]:
    data_dir = tmp_path_factory.mktemp("directory")
    databases: PostgresDatabases | None = None
    if request.param == "postgresql":
        # The server of the `postgres` fixture (an async fixture cannot be asked for from here).
        databases = PostgresDatabases(request.getfixturevalue("postgres_server_url"))
        settings = Settings(data_dir=data_dir, registry_database_url=await databases.create())
    else:
        settings = Settings(data_dir=data_dir)
    await upgrade(load_definition("registry").migrations, settings.database_url("registry"))
    app = create_app(
        "registry",
        settings,
        clock=FrozenClock(NOW),
        transport=MemoryTransport(MemoryBroker()),
        verifier=FixedVerifier(),
    )
    authorities = seed()
    async with app.router.lifespan_context(app):
        async with app.state.runtime.sessions() as session, session.begin():
            session.add_all(authorities.values())
            for authority in authorities.values():
                await index_authority(session, authority, NOW)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
                yield Directory(request.param, app, client, {key: a.id for key, a in authorities.items()})
        finally:
            if databases is not None:
                await databases.drop_all()


Find = Callable[..., Awaitable[DirectoryPage]]

_PARAMS = {"text": "q", "language": "lang"}


@pytest.fixture(params=["http", "search"])
def find(request: pytest.FixtureRequest, directory: Directory) -> Find:
    """Search through the HTTP API or by calling ``search()``; both answer a ``DirectoryPage``."""

    async def through_http(**criteria: Any) -> DirectoryPage:
        params = {_PARAMS.get(name, name): value for name, value in criteria.items() if value is not None}
        response = await directory.client.get("/directory/authorities", params=params, headers=TOKEN)
        assert response.status_code == 200, response.text
        return DirectoryPage.model_validate(response.json())

    async def through_search(**criteria: Any) -> DirectoryPage:
        async with directory.sessions() as session:
            return await search(session, **criteria)

    return through_http if request.param == "http" else through_search


async def test_a_user_who_does_not_type_umlauts_finds_the_aerztekammer_rule_s1(directory: Directory, find: Find):
    page = await find(text="arztekammer")
    assert directory.keys(page) == ["wien"]  # never the pending one in Kärnten
    assert page.total == 1
    assert page.items[0].official_name == "Ärztekammer für Wien"


async def test_every_word_is_matched_as_the_start_of_a_word_rule_s1(directory: Directory, find: Find):
    for text in ("medicilor", "medic", "Colegiul Medic", "col med clu"):
        page = await find(text=text)
        assert "cluj" in directory.keys(page), text
    assert directory.keys(await find(text="medicilor cluj")) == ["cluj"]  # all words must match
    assert "cluj" in directory.keys(await find(text="me"))
    assert (await find(text="m")).total == 0  # one letter is a whole word, not every word with m
    assert (await find(text="medicilor graz")).total == 0


async def test_search_ignores_accents_and_case_both_ways_rule_s1(directory: Directory, find: Find):
    assert directory.keys(await find(text="ÄRZTEKAMMER")) == ["wien"]
    assert directory.keys(await find(text="Ärztekammer")) == ["wien"]
    assert directory.keys(await find(text="colegiul medicilor"))[0] == "cluj"
    assert directory.keys(await find(text="COLEGIUL MEDICILOR"))[0] == "cluj"
    assert directory.keys(await find(text="sanatatii")) == ["ministry"]
    assert directory.keys(await find(text="SĂNĂTĂȚII")) == ["ministry"]
    assert directory.keys(await find(text="médecins")) == ["paris"]
    assert directory.keys(await find(text="MEDECINS")) == ["paris"]
    assert directory.keys(await find(text="ΙΑΤΡΙΚΟΣ ΣΥΛΛΟΓΟΣ")) == ["athens"]  # Greek stays Greek
    assert directory.keys(await find(text="ιατρικός")) == ["athens"]


async def test_a_keywords_name_in_any_language_finds_the_authorities_that_carry_it_rules_s1_s3(
    directory: Directory, find: Find
):
    finnish = keyword_name(PQ, "doctor_of_medicine", "fi")  # "Lääkäri"
    assert directory.keys(await find(text=finnish)) == ["cluj"]  # the pending one carries it too
    german = keyword_name(PQ, "doctor_of_medicine", "de")  # "Arzt"
    assert "cluj" in directory.keys(await find(text=german))
    # An economic activity (rule S2) and a legislative area's name (rule A4), in other languages.
    assert "cluj" in directory.keys(await find(text="Terveyspalvelut"))  # fi: human health activities
    services_pl = next(a for a in legislative_areas() if a.code == "services").name["pl"]
    assert set(directory.keys(await find(text=services_pl))) == {"ministry", "graz"}


async def test_a_user_who_does_not_speak_the_language_finds_the_authority_by_its_translated_name_rule_s1(
    directory: Directory, find: Find
):
    page = await find(text="physicians", language="en")
    assert directory.keys(page) == ["cluj"]
    entry = page.items[0]
    assert entry.informal_name == "Cluj College of Physicians"
    assert entry.profile == "Professional body for the medical profession."
    assert (entry.language, entry.translated, entry.translation_status) == ("en", True, TranslationStatus.current)
    assert entry.official_name == "Colegiul Medicilor din Cluj"  # never translated (rule S1)
    assert (entry.country, entry.region, entry.level, entry.areas) == ("RO", "Cluj", Level.regional, [PQ])
    # Found in English whatever language the results are shown in.
    assert directory.keys(await find(text="physicians", language="de")) == ["cluj"]


async def test_results_come_in_the_callers_language_and_say_when_they_fall_back_to_the_original_rule_s1(
    directory: Directory, find: Find
):
    [finnish] = (await find(text="colegiul cluj", language="fi")).items
    assert (finnish.informal_name, finnish.language, finnish.translated) == ("Colegiul Medicilor Cluj", "ro", False)
    assert finnish.translation_status is None
    assert finnish.profile.startswith("Organizație profesională")
    [romanian] = (await find(text="colegiul cluj", language="ro")).items
    assert (romanian.informal_name, romanian.language, romanian.translated) == ("Colegiul Medicilor Cluj", "ro", True)


async def test_without_a_language_asked_results_come_in_the_callers_preferred_one_rule_s1(directory: Directory):
    """The test caller is a Finnish user (FixedVerifier): Vienna's chamber has no Finnish translation."""
    response = await directory.client.get("/directory/authorities", params={"q": "arztekammer"}, headers=TOKEN)
    [shown] = DirectoryPage.model_validate(response.json()).items
    assert (shown.informal_name, shown.language, shown.translated) == ("Ärztekammer Wien", "de", False)
    response = await directory.client.get(
        "/directory/authorities", params={"q": "arztekammer", "lang": "en"}, headers=TOKEN
    )
    [english] = DirectoryPage.model_validate(response.json()).items
    assert (english.informal_name, english.language, english.translated) == ("Vienna Medical Chamber", "en", True)


async def test_filters_by_country_region_level_and_legislative_area_combine_rule_s1(directory: Directory, find: Find):
    assert set(directory.keys(await find(country="AT"))) == {"wien", "graz"}
    assert directory.keys(await find(country="RO", level="national")) == ["ministry"]
    assert directory.keys(await find(region="Cluj")) == ["cluj"]
    assert set(directory.keys(await find(area="services"))) == {"ministry", "graz"}
    assert set(directory.keys(await find(level="national"))) == {"ministry", "paris"}
    assert set(directory.keys(await find(text="medic", country="RO"))) == {"cluj", "ministry"}
    assert directory.keys(await find(text="medic", country="RO", area="services")) == ["ministry"]
    assert (await find(text="arztekammer", country="RO")).total == 0


async def test_pages_cover_every_active_authority_once_by_informal_name_rule_s1(directory: Directory, find: Find):
    pages = [await find(language="en", page=number, page_size=4) for number in (1, 2, 3)]
    assert [page.total for page in pages] == [len(ACTIVE)] * 3
    assert [len(page.items) for page in pages] == [4, 2, 0]
    listed = [key for page in pages for key in directory.keys(page)]
    assert sorted(listed) == sorted(ACTIVE)  # each once, the pending one never
    names = [item.informal_name for page in pages for item in page.items]
    assert names == sorted(names)  # by the name the caller reads: "Cluj College…" in English
    assert names[0] == "Cluj College of Physicians"
    assert (pages[1].page, pages[1].page_size) == (2, 4)


async def test_a_name_match_ranks_above_a_profile_match_rule_s1(directory: Directory, find: Find):
    page = await find(text="medicilor")
    assert directory.keys(page) == ["cluj", "ministry"]  # the ministry only mentions the college


async def test_an_authority_not_validated_is_never_found_rule_s1(directory: Directory, find: Find):
    for text in ("karnten", "Ärztekammer Kärnten", None):
        assert "pending" not in directory.keys(await find(text=text, page_size=100))
    async with directory.sessions() as session:
        assert await session.get(DirectoryDocument, directory.ids["pending"]) is None


async def test_a_deactivated_authority_leaves_the_directory_and_a_changed_one_is_found_anew_rule_s1(
    directory: Directory,
):
    authority = _authority(
        country="SE",
        level=Level.local,
        region="Uppsala",
        official="Uppsala kommun",
        language="sv",
        informal="Miljöförvaltningen Uppsala",
        profile="Tillsyn över livsmedel.",
    )
    async with directory.sessions() as session, session.begin():
        session.add(authority)
        await index_authority(session, authority, NOW)
    async with directory.sessions() as session:
        assert [item.id for item in (await search(session, text="miljoforvaltningen")).items] == [authority.id]
    async with directory.sessions() as session, session.begin():
        stored = await session.get_one(Authority, authority.id)
        stored.informal_name = "Livsmedelstillsynen Uppsala"
        await index_authority(session, stored, NOW)
    async with directory.sessions() as session:
        assert [item.id for item in (await search(session, text="livsmedelstillsynen")).items] == [authority.id]
        assert (await search(session, text="Miljöförvaltningen Uppsala")).total == 0
    async with directory.sessions() as session, session.begin():
        stored = await session.get_one(Authority, authority.id)
        stored.status = AuthorityStatus.deactivated
        await index_authority(session, stored, NOW)
    async with directory.sessions() as session:
        assert (await search(session, text="livsmedelstillsynen")).total == 0
        assert await session.get(DirectoryDocument, authority.id) is None
        if directory.backend == "sqlite":  # the contentless FTS5 index forgot exactly what it held
            await session.execute(
                sql_text("INSERT INTO directory_fts (directory_fts, rank) VALUES ('integrity-check', 0)")
            )


async def test_reindexing_everything_rebuilds_a_damaged_search_index_rule_s1(directory: Directory):
    async with directory.sessions() as session, session.begin():
        if directory.backend == "sqlite":  # the FTS5 index emptied behind the documents' back
            await session.execute(sql_text("INSERT INTO directory_fts (directory_fts) VALUES ('delete-all')"))
        else:  # a vector lost, a word no name uses any more
            await session.execute(
                sql_text("DELETE FROM directory_fts WHERE authority_id = :id"), {"id": directory.ids["wien"]}
            )
            await session.execute(sql_text("INSERT INTO directory_fts_idx (word) VALUES ('zzquxx')"))
    async with directory.sessions() as session:
        assert (await search(session, text="arztekammer")).total == 0
    later = NOW + timedelta(days=1)
    async with directory.sessions() as session, session.begin():
        assert await reindex_all(session, later) == len(ACTIVE)
        documents = (await session.execute(select(func.count()).select_from(DirectoryDocument))).scalar_one()
        assert documents == len(ACTIVE)
        # The same data make the same document: none is rewritten.
        written = {
            at if at.tzinfo else at.replace(tzinfo=UTC)
            for at in (await session.execute(select(DirectoryDocument.updated_at))).scalars()
        }
        assert written == {NOW}
    async with directory.sessions() as session:
        found = [directory.keys(await search(session, text=text)) for text in ("arztekammer", "physicians", "lääkäri")]
        assert found == [["wien"], ["cluj"], ["cluj"]]
        assert (await search(session)).total == len(ACTIVE)
        if directory.backend == "postgresql":
            words = await session.execute(sql_text("SELECT count(*) FROM directory_fts_idx WHERE word = 'zzquxx'"))
            assert words.scalar_one() == 0
        else:
            await session.execute(
                sql_text("INSERT INTO directory_fts (directory_fts, rank) VALUES ('integrity-check', 0)")
            )


async def test_a_near_spelling_finds_the_authority_when_the_words_find_nothing_rule_s1(
    directory: Directory, find: Find
):
    assert directory.keys(await find(text="arztekamer")) == ["wien"]  # one m missing
    assert directory.keys(await find(text="Arztekamer wien")) == ["wien"]
    assert directory.keys(await find(text="colegiul medicillor cluj")) == ["cluj"]
    assert directory.keys(await find(text="Laakri")) == ["cluj"]  # a keyword's name, misspelt
    assert (await find(text="arztekamer graz")).total == 0  # every word must still match
    assert (await find(text="zzyzx")).total == 0


async def test_searching_needs_an_access_token_but_no_role_rule_s9(directory: Directory):
    response = await directory.client.get("/directory/authorities", params={"q": "arztekammer"})
    assert response.status_code == 401
    response = await directory.client.get("/directory/authorities", params={"q": "arztekammer"}, headers=TOKEN)
    assert response.status_code == 200
    assert response.json()["total"] == 1


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"country": "US"}, "unknown_country", "country"),
        ({"country": "EU"}, "unknown_country", "country"),
        ({"area": "taxation"}, "unknown_legislative_area", "area"),
        ({"lang": "ru"}, "unknown_language", "lang"),
        ({"page_size": "0"}, "invalid_request", "query.page_size"),
        ({"page_size": "101"}, "invalid_request", "query.page_size"),
        ({"page": "0"}, "invalid_request", "query.page"),
        ({"level": "federal"}, "invalid_request", "query.level"),
        ({"q": "x" * 201}, "invalid_request", "query.q"),
    ],
)
async def test_a_bad_criterion_is_refused_with_its_field_rule_s1(directory: Directory, params, code, field):
    response = await directory.client.get("/directory/authorities", params=params, headers=TOKEN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)


async def test_a_country_code_in_lower_case_is_understood_rule_s1(directory: Directory):
    response = await directory.client.get("/directory/authorities", params={"country": "ro"}, headers=TOKEN)
    assert response.status_code == 200
    assert response.json()["total"] == 2


# Folding and documents, no database.


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Ärztekammer für Wien", "arztekammer fur wien"),
        ("Colegiul Medicilor din Cluj-Napoca", "colegiul medicilor din cluj napoca"),
        ("Straße", "strasse"),
        ("STRASSE", "strasse"),
        ("Lægeforening, Øresund", "laegeforening oresund"),
        ("Œuvre", "oeuvre"),
        ("Đakovo Łódź", "dakovo lodz"),
        ("Ħamrun", "hamrun"),
        ("Işık", "isik"),
        ("Þingvellir, Ðð", "thingvellir dd"),
        ("Ιατρικός Σύλλογος", "ιατρικοσ συλλογοσ"),
        ("Лекарски съюз, Й", "лекарски съюз и"),
        ("  Tab\tand\nnew   line ", "tab and new line"),
        ("Directive 2005/36/EC", "directive 2005 36 ec"),
        ("l'Ordre des médecins", "l ordre des medecins"),
        ("ﬁnance ²", "finance 2"),
    ],
)
def test_folding_drops_case_accents_and_punctuation_but_keeps_the_script_rule_s1(text: str, folded: str):
    assert fold(text) == folded


def test_the_document_holds_names_keywords_and_profiles_in_every_language_rule_s1():
    authority = seed()["cluj"]
    document = document_for(authority)
    names, terms, profiles = document.split("|")
    assert "colegiul medicilor din cluj" in names
    assert "physicians" in names.split()
    for language in ("fi", "de", "el", "bg", "is"):  # the keyword in every language
        for word in fold(keyword_name(PQ, "doctor_of_medicine", language)).split():
            assert word in terms.split()
    assert {"ammattipatevyys", "berufsqualifikationen", "romania", "rumanien"} <= set(terms.split())
    assert "avizeaza" in profiles.split()
    assert "medical" in profiles.split()
    for section in (names, terms, profiles):
        assert fold(section) == section
        assert len(section.split()) == len(set(section.split()))  # each word once per section
