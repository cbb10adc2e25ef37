"""3. The directory at scale: 20,000 authorities (``--quick``: 1,000) in the 30 countries and their
26 languages, searched with a fixed mix of queries in six languages, on PostgreSQL.

Authorities are generated from word lists per language: kinds of institution below, and the real
words of the registry's reference data (``services/registry/reference/``): the professions and
services of the legislative areas' keyword lists, NACE activities, policy areas, country names.
Each authority has its informal name and profile in its own language, an English translation and
two more, one to three keywords of its area's list, one or two economic activities and a policy
area. They are loaded with COPY straight into the registry's migrated tables and indexed by
``services.registry.directory.reindex_all`` (the registry's own indexing code, the path ops take
after a restore; a new authority goes through ``index_authority`` one by one).

Queries call ``services.registry.directory.search`` as the ``GET /directory/authorities`` route
does (first page of 20): professions and services in their own language, accent-free spellings,
a profession with a city, institution names, a misspelling (near words), a country filter, and a
listing without text.

Floor: the plainest query the same GIN index answers for the same words, with raw asyncpg:
``SELECT authority_id FROM directory_fts WHERE vector @@ to_tsquery('simple', 'w1:* & w2:*')
ORDER BY ts_rank(...) DESC LIMIT 20``. For indexing, the floor is building the same weighted
tsvectors and GIN index from the same documents in one SQL statement each.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from bench.core import Mode, Result, latency_summary, log, peak_rss_mib, percentile, rss_mib, safe_ratio
from bench.infra import Infra, asyncpg_dsn, migrate
from services.registry.reference import countries, economic_activities, keywords, legislative_areas, policy_areas
from shared.database import create_engine, create_session_factory

NEEDS_BROKER = False  # PostgreSQL only
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# Kinds of institution per language: chamber, ministry, agency, office, council, inspectorate.
INSTITUTIONS: dict[str, tuple[str, ...]] = {
    "bg": ("Камара", "Министерство", "Агенция", "Служба", "Съвет", "Инспекция"),
    "cs": ("Komora", "Ministerstvo", "Agentura", "Úřad", "Rada", "Inspekce"),
    "da": ("Kammer", "Ministerium", "Styrelse", "Kontor", "Råd", "Tilsyn"),
    "de": ("Kammer", "Ministerium", "Agentur", "Amt", "Rat", "Aufsicht"),
    "el": ("Επιμελητήριο", "Υπουργείο", "Οργανισμός", "Γραφείο", "Συμβούλιο", "Επιθεώρηση"),
    "en": ("Chamber", "Ministry", "Agency", "Office", "Council", "Inspectorate"),
    "es": ("Colegio", "Ministerio", "Agencia", "Oficina", "Consejo", "Inspección"),
    "et": ("Koda", "Ministeerium", "Amet", "Büroo", "Nõukogu", "Inspektsioon"),
    "fi": ("Kamari", "Ministeriö", "Virasto", "Toimisto", "Neuvosto", "Tarkastus"),
    "fr": ("Ordre", "Ministère", "Agence", "Office", "Conseil", "Inspection"),
    "ga": ("Cumann", "Roinn", "Gníomhaireacht", "Oifig", "Comhairle", "Cigireacht"),
    "hr": ("Komora", "Ministarstvo", "Agencija", "Ured", "Vijeće", "Inspektorat"),
    "hu": ("Kamara", "Minisztérium", "Ügynökség", "Hivatal", "Tanács", "Felügyelőség"),
    "it": ("Ordine", "Ministero", "Agenzia", "Ufficio", "Consiglio", "Ispettorato"),
    "lt": ("Rūmai", "Ministerija", "Agentūra", "Tarnyba", "Taryba", "Inspekcija"),
    "lv": ("Kamera", "Ministrija", "Aģentūra", "Birojs", "Padome", "Inspekcija"),
    "mt": ("Kamra", "Ministeru", "Aġenzija", "Uffiċċju", "Kunsill", "Spettorat"),
    "nl": ("Kamer", "Ministerie", "Agentschap", "Bureau", "Raad", "Inspectie"),
    "pl": ("Izba", "Ministerstwo", "Agencja", "Urząd", "Rada", "Inspekcja"),
    "pt": ("Ordem", "Ministério", "Agência", "Gabinete", "Conselho", "Inspeção"),
    "ro": ("Colegiul", "Ministerul", "Agenția", "Oficiul", "Consiliul", "Inspectoratul"),
    "sk": ("Komora", "Ministerstvo", "Agentúra", "Úrad", "Rada", "Inšpekcia"),
    "sl": ("Zbornica", "Ministrstvo", "Agencija", "Urad", "Svet", "Inšpektorat"),
    "sv": ("Kammare", "Departement", "Myndighet", "Kontor", "Råd", "Inspektion"),
    "is": ("Ráð", "Ráðuneyti", "Stofnun", "Skrifstofa", "Nefnd", "Eftirlit"),
    "no": ("Kammer", "Departement", "Direktorat", "Kontor", "Råd", "Tilsyn"),
}
# Phrases for profiles per language: "responsible for", "in", "registration", "recognition".
PHRASES: dict[str, tuple[str, str, str]] = {
    "bg": ("отговаря за", "в", "регистрация и признаване"),
    "cs": ("odpovídá za", "v", "registrace a uznávání"),
    "da": ("ansvarlig for", "i", "registrering og anerkendelse"),
    "de": ("zuständig für", "in", "Registrierung und Anerkennung"),
    "el": ("αρμόδιο για", "σε", "εγγραφή και αναγνώριση"),
    "en": ("responsible for", "in", "registration and recognition"),
    "es": ("responsable de", "en", "registro y reconocimiento"),
    "et": ("vastutab", "linnas", "registreerimine ja tunnustamine"),
    "fi": ("vastaa", "kaupungissa", "rekisteröinti ja tunnustaminen"),
    "fr": ("chargé de", "à", "inscription et reconnaissance"),
    "ga": ("freagrach as", "i", "clárú agus aitheantas"),
    "hr": ("nadležno za", "u", "registracija i priznavanje"),
    "hu": ("felelős", "városban", "nyilvántartás és elismerés"),
    "it": ("competente per", "a", "iscrizione e riconoscimento"),
    "lt": ("atsakinga už", "mieste", "registracija ir pripažinimas"),
    "lv": ("atbild par", "pilsētā", "reģistrācija un atzīšana"),
    "mt": ("responsabbli għal", "f'", "reġistrazzjoni u rikonoxximent"),
    "nl": ("bevoegd voor", "in", "registratie en erkenning"),
    "pl": ("odpowiada za", "w", "rejestracja i uznawanie"),
    "pt": ("responsável por", "em", "inscrição e reconhecimento"),
    "ro": ("responsabil pentru", "în", "înregistrare și recunoaștere"),
    "sk": ("zodpovedá za", "v", "registrácia a uznávanie"),
    "sl": ("pristojen za", "v", "registracija in priznavanje"),
    "sv": ("ansvarig för", "i", "registrering och erkännande"),
    "is": ("ber ábyrgð á", "í", "skráning og viðurkenning"),
    "no": ("ansvarlig for", "i", "registrering og godkjenning"),
}
CITIES: dict[str, tuple[str, ...]] = {
    "AT": ("Wien", "Graz", "Linz", "Salzburg"),
    "BE": ("Bruxelles", "Antwerpen", "Gent", "Liège"),
    "BG": ("София", "Пловдив", "Варна", "Бургас"),
    "HR": ("Zagreb", "Split", "Rijeka", "Osijek"),
    "CY": ("Λευκωσία", "Λεμεσός", "Λάρνακα", "Πάφος"),
    "CZ": ("Praha", "Brno", "Ostrava", "Plzeň"),
    "DK": ("København", "Aarhus", "Odense", "Aalborg"),
    "EE": ("Tallinn", "Tartu", "Narva", "Pärnu"),
    "FI": ("Helsinki", "Tampere", "Turku", "Oulu"),
    "FR": ("Paris", "Lyon", "Marseille", "Toulouse"),
    "DE": ("Berlin", "München", "Köln", "Düsseldorf"),
    "GR": ("Αθήνα", "Θεσσαλονίκη", "Πάτρα", "Ηράκλειο"),
    "HU": ("Budapest", "Debrecen", "Szeged", "Pécs"),
    "IS": ("Reykjavík", "Kópavogur", "Hafnarfjörður", "Akureyri"),
    "IE": ("Dublin", "Cork", "Galway", "Limerick"),
    "IT": ("Roma", "Milano", "Napoli", "Torino"),
    "LV": ("Rīga", "Daugavpils", "Liepāja", "Jelgava"),
    "LI": ("Vaduz", "Schaan", "Triesen", "Balzers"),
    "LT": ("Vilnius", "Kaunas", "Klaipėda", "Šiauliai"),
    "LU": ("Luxembourg", "Esch-sur-Alzette", "Differdange", "Dudelange"),
    "MT": ("Valletta", "Birkirkara", "Mosta", "Qormi"),
    "NL": ("Amsterdam", "Rotterdam", "Utrecht", "Den Haag"),
    "NO": ("Oslo", "Bergen", "Trondheim", "Stavanger"),
    "PL": ("Warszawa", "Kraków", "Łódź", "Wrocław"),
    "PT": ("Lisboa", "Porto", "Braga", "Coimbra"),
    "RO": ("București", "Cluj-Napoca", "Iași", "Timișoara"),
    "SK": ("Bratislava", "Košice", "Prešov", "Žilina"),
    "SI": ("Ljubljana", "Maribor", "Celje", "Kranj"),
    "ES": ("Madrid", "Barcelona", "Sevilla", "Málaga"),
    "SE": ("Stockholm", "Göteborg", "Malmö", "Uppsala"),
}
LEVELS = ("national", "regional", "local")


@dataclass
class Generated:
    id: uuid.UUID
    country: str
    language: str
    area: str
    keywords: list[tuple[str, str]]
    rows: dict[str, Any]
    translations: list[tuple[str, str, str]]  # language, informal name, profile


def _name(mapping: Any, language: str) -> str:
    return mapping.name.get(language) or mapping.name["en"]


@dataclass(frozen=True)
class Parts:
    """What an authority's texts are made of, in any language."""

    kind: int
    chosen: list[Any]
    activity: list[Any]
    policy: Any
    city: str
    level: str
    country: Any


def _texts(lang: str, parts: Parts) -> tuple[str, str, str]:
    """Official name, informal name and profile of an authority in ``lang``."""
    institution = INSTITUTIONS[lang][parts.kind]
    subject = _name(parts.chosen[0], lang)
    responsible, place, registration = PHRASES[lang]
    city = parts.city
    informal = f"{institution} {subject} {city}" if parts.level != "national" else f"{institution} {subject}"
    official = f"{informal} ({_name(parts.country, lang)})"
    profile = (
        f"{institution} {responsible} "
        + ", ".join(_name(k, lang) for k in parts.chosen)
        + f" {place} {city}; {registration}. "
        + "; ".join(_name(a, lang) for a in parts.activity)
        + f". {_name(parts.policy, lang)}."
    )
    return official, informal, profile


def generate(count: int, seed: int = 20) -> Iterator[Generated]:
    rng = random.Random(seed)
    all_countries = countries()
    areas = [a.code for a in legislative_areas()]
    area_keywords = {area: keywords(area) for area in areas}
    activities = [a for a in economic_activities() if a.level == "division"]
    policies = list(policy_areas())
    languages = list(INSTITUTIONS)
    for _ in range(count):
        country = rng.choice(all_countries)
        language = rng.choice(country.languages)
        area = rng.choice(areas)
        chosen = rng.sample(area_keywords[area], rng.randint(1, 3))
        activity = rng.sample(activities, rng.randint(1, 2))
        policy = rng.choice(policies)
        kind = rng.randrange(len(INSTITUTIONS["en"]))
        city = rng.choice(CITIES[country.code])
        level = rng.choice(LEVELS)

        parts = Parts(kind, chosen, activity, policy, city, level, country)
        official, informal, profile = _texts(language, parts)
        others = [lang for lang in languages if lang != language]
        translated = ["en"] if language != "en" else []
        translated += rng.sample([lang for lang in others if lang != "en"], 2)
        authority_id = uuid.UUID(int=rng.getrandbits(128))
        yield Generated(
            id=authority_id,
            country=country.code,
            language=language,
            area=area,
            keywords=[(area, k.code) for k in chosen]
            + [("economic_activity", a.code) for a in activity]
            + [("policy_area", policy.code)],
            rows={
                "id": authority_id,
                "kind": "competent_authority",
                "country": country.code,
                "level": level,
                "region": city if level != "national" else None,
                "official_name": official,
                "language": language,
                "informal_name": informal,
                "profile": profile,
                "address": f"{city}, {country.code}",
                "phone": "",
                "website": "",
                "status": "active",
                "allocation_enabled": False,
                "coordinator_area": None,
                "registered_by_id": None,
                "validated_by_id": None,
                "created_at": NOW,
                "updated_at": NOW,
                "version": 1,
            },
            translations=[(lang, *_texts(lang, parts)[1:]) for lang in translated],
        )


async def _copy(connection: asyncpg.Connection, table: str, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    columns = list(records[0])
    await connection.copy_records_to_table(
        table, records=[tuple(r[c] for c in columns) for r in records], columns=columns
    )


async def load(database_url: str, count: int, batch: int = 2000) -> dict[str, Any]:
    """COPY ``count`` generated authorities into the registry's tables; returns sizes."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    totals = {"authorities": 0, "translations": 0, "keywords": 0, "areas": 0}
    try:
        pending: list[Generated] = []

        async def flush() -> None:
            await _copy(connection, "authorities", [g.rows for g in pending])
            await _copy(
                connection,
                "authority_translations",
                [
                    {
                        "authority_id": g.id,
                        "language": lang,
                        "informal_name": name,
                        "profile": profile,
                        "status": "current",
                        "translated_at": NOW,
                        "translated_by": "translator",
                    }
                    for g in pending
                    for lang, name, profile in g.translations
                ],
            )
            await _copy(
                connection,
                "authority_keywords",
                [{"authority_id": g.id, "list_name": ln, "code": code} for g in pending for ln, code in g.keywords],
            )
            await _copy(
                connection,
                "authority_areas",
                [{"authority_id": g.id, "area": g.area, "granted_by_id": None, "granted_at": NOW} for g in pending],
            )
            totals["authorities"] += len(pending)
            totals["translations"] += sum(len(g.translations) for g in pending)
            totals["keywords"] += sum(len(g.keywords) for g in pending)
            totals["areas"] += len(pending)
            pending.clear()

        for generated in generate(count):
            pending.append(generated)
            if len(pending) >= batch:
                await flush()
        await flush()
    finally:
        await connection.close()
    return totals


@dataclass(frozen=True)
class Query:
    language: str
    text: str | None
    kind: str
    country: str | None = None


def query_mix() -> list[Query]:
    """Six languages; in each: a profession, the same accent-free and in lower case, a service of
    the other area, a profession with a city, an institution with a city written without accents,
    a misspelt profession, and a profession within one country; plus listings without text."""
    from services.registry.directory import fold

    def kw(area: str, code: str, lang: str) -> str:
        return next(k for k in keywords(area) if k.code == code).name[lang]

    pq, sv = "professional_qualifications", "services"
    plan = {
        "en": ("IE", "Dublin"),
        "de": ("DE", "München"),
        "fr": ("FR", "Lyon"),
        "ro": ("RO", "Cluj-Napoca"),
        "pl": ("PL", "Łódź"),
        "es": ("ES", "Málaga"),
    }
    mix: list[Query] = []
    for lang, (country, city) in plan.items():
        doctor = kw(pq, "doctor_of_medicine", lang)
        pharmacist = kw(pq, "pharmacist", lang)
        architect = kw(pq, "architect", lang)
        misspelt = pharmacist[:-2] + pharmacist[-1] if len(pharmacist) > 5 else pharmacist + "e"
        mix += [
            Query(lang, doctor, "profession"),
            Query(lang, fold(pharmacist), "accent-free"),
            Query(lang, kw(sv, "construction", lang), "service"),
            Query(lang, f"{architect} {city}", "profession + city"),
            Query(lang, fold(f"{INSTITUTIONS[lang][1]} {city}"), "institution + city, accent-free"),
            Query(lang, misspelt, "misspelt"),
            Query(lang, doctor, "profession, one country", country=country),
        ]
    mix += [Query("en", None, "listing, one country", country="RO"), Query("de", None, "listing, all")]
    return mix


def floor_tsquery(text: str) -> str:
    from services.registry.directory import terms_of

    return " & ".join(f"{t}:*" if len(t) >= 2 else t for t in terms_of(text))


async def run(infra: Infra, mode: Mode) -> Result:
    count = mode.pick(20_000, 1_000, 150)
    rounds = mode.pick(5, 3, 1)
    result = Result(
        "directory",
        "The directory at scale: search in six languages on PostgreSQL",
        mode.name,
        target="search p95 < 50 ms on PostgreSQL",
        ratio_means="search p95 over floor p95 (raw asyncpg tsquery on the same GIN index)",
    )
    url = await infra.create_database()
    await migrate("registry", url)
    rss_start = rss_mib()
    log(f"directory: generating and loading {count} authorities")
    started = time.perf_counter()
    sizes = await load(url, count)
    load_s = time.perf_counter() - started
    rss_loaded = rss_mib()

    from services.registry.directory import reindex_all, search

    engine = create_engine(url)
    sessions = create_session_factory(engine)
    try:
        log("directory: indexing (reindex_all)")
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            indexed = await reindex_all(session, NOW)
        index_s = time.perf_counter() - started
        rss_indexed = rss_mib()
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await connection.execute("VACUUM ANALYZE")
            size = await connection.fetchrow(
                "SELECT pg_size_pretty(pg_database_size(current_database())) AS db,"
                " (SELECT count(*) FROM directory_fts_idx) AS words,"
                " (SELECT avg(length(document))::int FROM directory_documents) AS document_chars"
            )
            # Floor for indexing: the same tsvectors and GIN index in plain SQL.
            started = time.perf_counter()
            await connection.execute(
                "CREATE TABLE floor_fts AS SELECT authority_id,"
                " setweight(to_tsvector('simple', split_part(document, '|', 1)), 'A')"
                " || setweight(to_tsvector('simple', split_part(document, '|', 2)), 'B')"
                " || setweight(to_tsvector('simple', split_part(document, '|', 3)), 'D') AS vector"
                " FROM directory_documents"
            )
            await connection.execute("CREATE INDEX floor_fts_vector ON floor_fts USING gin (vector)")
            floor_index_s = time.perf_counter() - started
            await connection.execute("DROP TABLE floor_fts")

            mix = query_mix()
            per_kind: dict[str, list[float]] = {}
            all_latencies: list[float] = []
            floor_latencies: list[float] = []
            totals: dict[str, int] = {}
            for round_number in range(rounds + 1):  # the first round warms caches and is not counted
                for query in mix:
                    async with sessions() as session:
                        t0 = time.perf_counter()
                        page = await _search(session, search, query)
                        elapsed = time.perf_counter() - t0
                    if query.text:
                        expression = floor_tsquery(query.text)
                        t0 = time.perf_counter()
                        await connection.fetch(
                            "SELECT authority_id FROM directory_fts, to_tsquery('simple', $1) AS q"
                            " WHERE vector @@ q ORDER BY ts_rank(vector, q) DESC LIMIT 20",
                            expression,
                        )
                        floor_elapsed = time.perf_counter() - t0
                    else:
                        t0 = time.perf_counter()
                        await connection.fetch("SELECT id FROM authorities ORDER BY informal_name LIMIT 20")
                        floor_elapsed = time.perf_counter() - t0
                    if round_number == 0:
                        totals[f"{query.language}: {query.text or '(none)'} [{query.kind}]"] = page.total
                        continue
                    all_latencies.append(elapsed)
                    floor_latencies.append(floor_elapsed)
                    per_kind.setdefault(query.kind, []).append(elapsed)
        finally:
            await connection.close()
    finally:
        await engine.dispose()
    rss_after = rss_mib()
    searches = latency_summary(all_latencies)
    floor = latency_summary(floor_latencies)
    result.sizes = {"authorities": count, **sizes, "queries_in_mix": len(query_mix()), "rounds": rounds}
    result.figures = {
        "search": searches,
        "search_by_kind_p95_ms": {
            kind: round((percentile(v, 95) or 0) * 1000, 2) for kind, v in sorted(per_kind.items())
        },
        "matches_per_query": totals,
        "load_s": round(load_s, 2),
        "index_s": round(index_s, 2),
        "indexed": indexed,
        "database_size": size["db"],
        "index_words": size["words"],
        "document_chars_avg": size["document_chars"],
        "rss_mib": {
            "start": rss_start,
            "after_load": rss_loaded,
            "after_index": rss_indexed,
            "after_searches": rss_after,
            "peak": peak_rss_mib(),
        },
    }
    result.floor = {"search": floor, "index_s": round(floor_index_s, 2)}
    result.ratio = safe_ratio(searches["p95_ms"], floor["p95_ms"])
    result.met = searches["p95_ms"] is not None and searches["p95_ms"] < 50
    result.headline = (
        f"{count} authorities: search p50 {searches['p50_ms']} ms, p95 {searches['p95_ms']} ms; "
        f"load {load_s:.1f} s, index {index_s:.1f} s; RSS peak {peak_rss_mib()} MiB"
    )
    result.floor_headline = (
        f"tsquery p50 {floor['p50_ms']} ms, p95 {floor['p95_ms']} ms; GIN build {floor_index_s:.1f} s"
    )
    result.notes.append(
        "Memory is the resident set of the benchmark process (VmRSS from /proc; psutil is not installed), "
        "which holds the generator, the registry's indexing code and one search session."
    )
    return result


async def _search(session: AsyncSession, search: Any, query: Query) -> Any:
    return await search(session, text=query.text, country=query.country, language=query.language, page=1, page_size=20)
