"""The multilingual directory (rule S1, "Search"): a user who does not speak an authority's language
and does not know that country's administration must still find it.

Every active authority has one :class:`DirectoryDocument`: its names, keywords and profiles in every
language, folded (lower case, no accents, letters and digits only) so that "arztekammer" finds
"Ärztekammer" and the German name of a profession finds the Romanian college that carries it. The
document has three sections separated by ``|`` (which :func:`fold` never produces), so that ranking
can tell a name match from a profile match:

1. names: the official name, the informal name and every translation of it;
2. keywords: the name in all 26 languages of every competence keyword (rules S2, S3), of every
   legislative area (rule A4) and of the country, and the region;
3. profiles: the profile and every translation of it.

Each word appears once per section (the same word in many languages says nothing more).

The databases index the document with their own full-text search, built by migration 0003 in
tables named ``directory_fts*`` that triggers keep in sync with ``directory_documents``:

- SQLite (the embedded default): a contentless FTS5 table, one column per section
  (``unicode61 remove_diacritics 2``), and a table mapping its rows to authorities; ranked with
  bm25, names weighing most, then keywords, then profiles.
- PostgreSQL: the weighted ``tsvector`` of each document (names A, keywords B, profiles D) with a
  GIN index, ranked with ``ts_rank``; and the words of all names and keywords with a trigram index.

Every term of the query is matched as a prefix ("medic" finds "medicilor"; a one-letter term as a
whole word); all terms must match. When that finds nothing, a term may also be a word of the index
that looks much like it (trigram similarity): "arztekamer" finds "Ärztekammer".
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    table,
    update,
)
from sqlalchemy import column as sql_column
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.registry.models import (
    Authority,
    AuthorityArea,
    AuthorityKeyword,
    AuthorityStatus,
    AuthorityTranslation,
    DirectoryDocument,
    Level,
    TranslationStatus,
)
from services.registry.reference import (
    countries,
    economic_activities,
    keyword_areas,
    keywords,
    legislative_areas,
    policy_areas,
)
from shared.outbox import UnitOfWork

SECTION_SEPARATOR = "|"
MAX_TERMS = 16  # a query of 200 characters has at most this many useful words

# --------------------------------------------------------------------------------------------------
# Folding


# Letters that NFKD does not split into a base letter and a mark (casefold already gives ß -> ss).
_LETTERS = {"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "đ": "d", "ł": "l", "ħ": "h", "ı": "i", "þ": "th", "ð": "d"}


class _FoldTable(dict[int, str | None]):
    """A ``str.translate`` table filled on first sight of each character: a mark is dropped, a
    letter or digit kept (or spelled out, see ``_LETTERS``), anything else becomes a space."""

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        value: str | None
        if char in _LETTERS:
            value = _LETTERS[char]
        elif unicodedata.category(char).startswith("M"):
            value = None
        elif char.isalnum():
            value = char
        else:
            value = " "
        self[code] = value
        return value


_FOLD = _FoldTable()


def fold(text: str) -> str:
    """``text`` in lower case without accents, letters and digits separated by single spaces.

    "Ärztekammer für Wien" -> "arztekammer fur wien", "Straße" -> "strasse", "Ιατρός" -> "ιατροσ".
    Greek and Cyrillic stay in their script. The same function folds documents and queries.
    """
    if text.isascii():
        folded = text.lower().translate(_FOLD)
    else:
        folded = unicodedata.normalize("NFKD", text.casefold()).translate(_FOLD)
    return " ".join(folded.split())


def _words(texts: Iterable[str]) -> str:
    """The folded words of ``texts``, each once, in order of first appearance."""
    return " ".join(dict.fromkeys(fold(" ".join(texts)).split()))


# --------------------------------------------------------------------------------------------------
# Documents


@cache
def _names_by_list() -> dict[str, dict[str, tuple[str, ...]]]:
    """Every keyword list (rules S2, S3): list name -> code -> its names in all languages."""
    lists: dict[str, dict[str, tuple[str, ...]]] = {
        "economic_activity": {entry.code: tuple(entry.name.values()) for entry in economic_activities()},
        "policy_area": {entry.code: tuple(entry.name.values()) for entry in policy_areas()},
    }
    for area in keyword_areas():
        lists[area] = {entry.code: tuple(entry.name.values()) for entry in keywords(area)}
    return lists


@cache
def _area_names() -> dict[str, tuple[str, ...]]:
    return {area.code: tuple(area.name.values()) for area in legislative_areas()}


@cache
def _country_names() -> dict[str, tuple[str, ...]]:
    return {country.code: tuple(country.name.values()) for country in countries()}


def _keyword_names(list_name: str, code: str) -> tuple[str, ...]:
    return _names_by_list().get(list_name, {}).get(code, ())


def build_document(
    *,
    official_name: str,
    informal_name: str,
    profile: str,
    country: str,
    region: str | None,
    translations: Iterable[tuple[str, str]],
    keywords: Iterable[tuple[str, str]],
    areas: Iterable[str],
) -> str:
    """The folded search document from plain values: ``translations`` as (informal name, profile),
    ``keywords`` as (list name, code), ``areas`` as legislative area codes. The same values give the
    same document: translations come in the order given (by language), keywords and areas sorted."""
    translations = list(translations)
    names = [official_name, informal_name, *(name for name, _ in translations)]
    terms: list[str] = [*_country_names().get(country, ()), region or ""]
    for list_name, code in sorted(keywords):
        terms.extend(_keyword_names(list_name, code))
    for area in sorted(areas):
        terms.extend(_area_names().get(area, ()))
    profiles = [profile, *(text for _, text in translations)]
    return SECTION_SEPARATOR.join((_words(names), _words(terms), _words(profiles)))


def document_for(authority: Authority) -> str:
    """The folded search document of ``authority`` (its translations, keywords and areas loaded)."""
    return build_document(
        official_name=authority.official_name,
        informal_name=authority.informal_name,
        profile=authority.profile,
        country=authority.country,
        region=authority.region,
        translations=((t.informal_name, t.profile) for t in sorted(authority.translations, key=lambda t: t.language)),
        keywords=((k.list_name, k.code) for k in authority.keywords),
        areas=(a.area for a in authority.areas),
    )


async def index_authority(session: AsyncSession, authority: Authority, now: datetime) -> None:
    """Bring ``authority``'s directory document up to date, in the caller's transaction: written for
    an active authority, removed otherwise (a pending or deactivated authority is never found)."""
    await session.flush()  # the authority's row first: the document refers to it
    existing = await session.get(DirectoryDocument, authority.id)
    if authority.status != AuthorityStatus.active:
        if existing is not None:
            await session.delete(existing)
            await session.flush()
        return
    # In run_sync, relationships not loaded yet are loaded instead of failing in async code.
    document = await session.run_sync(lambda _: document_for(authority))
    if existing is None:
        session.add(DirectoryDocument(authority_id=authority.id, document=document, updated_at=now))
    elif existing.document != document:
        existing.document = document
        existing.updated_at = now
    await session.flush()


async def on_authority_changed(unit: UnitOfWork, authority: Authority) -> None:
    """An ``authority_listeners`` entry (services.registry.state): reindex with every change."""
    await index_authority(unit.session, authority, unit.clock.now())


_BATCH = 500


async def reindex_all(session: AsyncSession, now: datetime) -> int:
    """Rebuild the search index and every document (for ops: after a change of the reference data
    or of this module, or a restore); returns how many active authorities are indexed. Reads plain
    rows in batches, so memory stays small with 20,000 authorities; writes only the documents that
    changed."""
    active = AuthorityStatus.active.value
    await session.flush()
    # First the index, from the documents as they are: whatever happened to it (a restore, say),
    # it then agrees with them, and the triggers keep it so as documents go and change below.
    await _rebuild_index(session)
    await session.execute(
        delete(DirectoryDocument).where(
            ~exists().where(Authority.id == DirectoryDocument.authority_id, Authority.status == active)
        )
    )
    count = 0
    after: uuid.UUID | None = None
    while True:
        query = select(
            Authority.id,
            Authority.official_name,
            Authority.informal_name,
            Authority.profile,
            Authority.country,
            Authority.region,
        ).where(Authority.status == active)
        if after is not None:
            query = query.where(Authority.id > after)
        rows = (await session.execute(query.order_by(Authority.id).limit(_BATCH))).all()
        if not rows:
            break
        ids = [row.id for row in rows]
        after = ids[-1]
        translations: dict[uuid.UUID, list[tuple[str, str]]] = {}
        for t in await session.execute(
            select(AuthorityTranslation.authority_id, AuthorityTranslation.informal_name, AuthorityTranslation.profile)
            .where(AuthorityTranslation.authority_id.in_(ids))
            .order_by(AuthorityTranslation.authority_id, AuthorityTranslation.language)
        ):
            translations.setdefault(t.authority_id, []).append((t.informal_name, t.profile))
        keyword_rows: dict[uuid.UUID, list[tuple[str, str]]] = {}
        for k in await session.execute(
            select(AuthorityKeyword.authority_id, AuthorityKeyword.list_name, AuthorityKeyword.code).where(
                AuthorityKeyword.authority_id.in_(ids)
            )
        ):
            keyword_rows.setdefault(k.authority_id, []).append((k.list_name, k.code))
        areas = await _areas_of(session, ids)
        existing = {
            row.authority_id: row.document
            for row in await session.execute(
                select(DirectoryDocument.authority_id, DirectoryDocument.document).where(
                    DirectoryDocument.authority_id.in_(ids)
                )
            )
        }
        added: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for row in rows:
            document = build_document(
                official_name=row.official_name,
                informal_name=row.informal_name,
                profile=row.profile,
                country=row.country,
                region=row.region,
                translations=translations.get(row.id, ()),
                keywords=keyword_rows.get(row.id, ()),
                areas=areas.get(row.id, ()),
            )
            if row.id not in existing:
                added.append({"authority_id": row.id, "document": document, "updated_at": now})
            elif existing[row.id] != document:
                changed.append({"authority_id": row.id, "document": document, "updated_at": now})
        # Plain statements, not ORM objects: 20,000 documents are not kept in the session.
        if added:
            await session.execute(insert(DirectoryDocument), added)
        if changed:
            await session.execute(update(DirectoryDocument), changed)
        count += len(rows)
    return count


# SQLite: the three sections of a document (as in migration 0003).
_REST = "substr({d}, instr({d}, '|') + 1)"
SQLITE_SECTIONS = (
    "substr({d}, 1, instr({d}, '|') - 1)",
    "substr(" + _REST + ", 1, instr(" + _REST + ", '|') - 1)",
    "substr(" + _REST + ", instr(" + _REST + ", '|') + 1)",
)


async def _rebuild_index(session: AsyncSession) -> None:
    """The search index rebuilt from the documents, whatever happened to it (a restore, say)."""
    if _dialect(session) == "sqlite":
        statements = [
            "INSERT INTO directory_fts (directory_fts) VALUES ('delete-all')",
            "DELETE FROM directory_fts_content"
            " WHERE authority_id NOT IN (SELECT authority_id FROM directory_documents)",
            "INSERT INTO directory_fts_content (authority_id) SELECT authority_id FROM directory_documents"
            " WHERE authority_id NOT IN (SELECT authority_id FROM directory_fts_content)",
            "INSERT INTO directory_fts (rowid, names, keywords, profiles) SELECT m.id, "
            + ", ".join(section.format(d="d.document") for section in SQLITE_SECTIONS)
            + " FROM directory_documents AS d JOIN directory_fts_content AS m ON m.authority_id = d.authority_id",
        ]
    else:
        # The vectors follow their documents in every transaction (trigger; a document's removal
        # cascades): only a missing one is made again, by the trigger. The word list only grows
        # with the names; it is made again from the vectors, without the words no longer used.
        statements = [
            "UPDATE directory_documents SET document = document"
            " WHERE authority_id NOT IN (SELECT authority_id FROM directory_fts)",
            "DELETE FROM directory_fts_idx",
            "INSERT INTO directory_fts_idx (word) SELECT DISTINCT unnest(tsvector_to_array(ts_filter(vector, '{a,b}')))"
            " FROM directory_fts ORDER BY 1 ON CONFLICT DO NOTHING",
        ]
    for statement in statements:
        await session.execute(sql_text(statement))


# --------------------------------------------------------------------------------------------------
# The search index of migration 0003: ``directory_fts`` on both databases, filled by triggers.

# PostgreSQL: each document's weighted tsvector, and every word of the names and keywords.
_pg_fts = table("directory_fts", sql_column("authority_id"), sql_column("vector"))
_pg_words = table("directory_fts_idx", sql_column("word"))
# SQLite: the contentless FTS5 table (rowids only) and the authority of each rowid.
_sqlite_fts = table("directory_fts")
_sqlite_rows = table("directory_fts_content", sql_column("id"), sql_column("authority_id"))
# bm25 weights of the FTS5 columns: names, keywords, profiles.
_BM25 = "bm25(directory_fts, 10.0, 4.0, 1.0)"
MIN_PREFIX = 2  # a one-letter word is matched whole: "a" as a prefix would be nearly everything
NEAR_WORDS = 5
NEAR_SIMILARITY = 0.5


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# --------------------------------------------------------------------------------------------------
# Search


class DirectoryEntry(BaseModel):
    """One authority as the directory shows it, in the caller's language where a translation exists."""

    id: uuid.UUID
    official_name: str = Field(description="Always in the authority's own language (rule S1)")
    informal_name: str
    profile: str
    language: str = Field(description="The language of informal_name and profile")
    translated: bool = Field(
        description="False when no text exists in the requested language and the original is shown"
    )
    translation_status: TranslationStatus | None = Field(
        None, description="current, outdated or machine for a translation; null for the original"
    )
    country: str
    region: str | None
    level: Level
    areas: list[str] = Field(description="Codes of the legislative areas the authority works in")


class DirectoryPage(BaseModel):
    items: list[DirectoryEntry]
    total: int = Field(description="Authorities matching the query, over all pages")
    page: int
    page_size: int


async def search(
    session: AsyncSession,
    *,
    text: str | None = None,
    country: str | None = None,
    region: str | None = None,
    level: str | None = None,
    area: str | None = None,
    language: str = "en",
    page: int = 1,
    page_size: int = 20,
) -> DirectoryPage:
    """Active authorities matching every term of ``text`` (as prefixes, accent- and case-blind) and
    every filter given, best first; without text, all of them by informal name in ``language``."""
    conditions: list[ColumnElement[bool]] = [Authority.status == AuthorityStatus.active.value]
    if country is not None:
        conditions.append(Authority.country == country)
    if region is not None:
        conditions.append(Authority.region == region)
    if level is not None:
        conditions.append(Authority.level == level)
    if area is not None:
        conditions.append(exists().where(AuthorityArea.authority_id == Authority.id, AuthorityArea.area == area))

    # The translation in the caller's language, unless the original already is in it.
    translation = aliased(AuthorityTranslation)
    on_translation = and_(
        translation.authority_id == Authority.id,
        translation.language == language,
        Authority.language != language,
    )
    shown = select(
        Authority.id,
        Authority.official_name,
        Authority.informal_name,
        Authority.profile,
        Authority.language,
        Authority.country,
        Authority.region,
        Authority.level,
        translation.informal_name.label("t_name"),
        translation.profile.label("t_profile"),
        translation.status.label("t_status"),
    ).outerjoin(translation, on_translation)
    offset = (page - 1) * page_size
    terms = terms_of(text)

    if not terms:
        total = (await session.execute(select(func.count()).select_from(Authority).where(*conditions))).scalar_one()
        shown_name = func.coalesce(translation.informal_name, Authority.informal_name)
        listed = shown.where(*conditions).order_by(shown_name, Authority.id).limit(page_size).offset(offset)
        rows = (await session.execute(listed)).all() if total > offset else []
    else:
        async with _index_only(session):
            index = _Index(_dialect(session), conditions)
            groups = [[term] for term in terms]
            total = await index.count(session, groups)
            if not total:
                # Near spellings ("arztekamer"): each term may also be a word of the index that
                # looks much like it; every term must still match.
                near = [await near_words(session, term) for term in terms]
                if any(near):
                    groups = [[term, *words] for term, words in zip(terms, near, strict=True)]
                    total = await index.count(session, groups)
            # Ranked on the index alone; only the rows of the page are joined with their translation.
            best = index.best(groups, page_size, offset)
            listed = shown.join(best, best.c.id == Authority.id)
            listed = listed.order_by(best.c.rank, Authority.informal_name, Authority.id)
            rows = (await session.execute(listed)).all() if total > offset else []

    areas = await _areas_of(session, [row.id for row in rows])
    items = [
        DirectoryEntry(
            id=row.id,
            official_name=row.official_name,
            informal_name=row.t_name if row.t_name is not None else row.informal_name,
            profile=row.t_profile if row.t_name is not None else row.profile,
            language=language if row.t_name is not None else row.language,
            translated=row.t_name is not None or row.language == language,
            translation_status=row.t_status,
            country=row.country,
            region=row.region,
            level=row.level,
            areas=sorted(areas.get(row.id, ())),
        )
        for row in rows
    ]
    return DirectoryPage(items=items, total=total, page=page, page_size=page_size)


def terms_of(text: str | None) -> list[str]:
    """The folded, distinct words of a query, at most ``MAX_TERMS``."""
    if not text:
        return []
    return list(dict.fromkeys(fold(text).split()))[:MAX_TERMS]


class _Index:
    """Full-text queries on one database's index, for authorities meeting ``conditions``.

    ``groups`` are the query: every group must match, its first word as a prefix (a one-letter
    word whole), or one of its other words exactly. Words are letters and digits only (folded, or
    taken from the index), and the query goes to the database as one bound value.
    """

    def __init__(self, dialect: str, conditions: list[ColumnElement[bool]]) -> None:
        self.sqlite = dialect == "sqlite"
        self.conditions = conditions

    def _expression(self, groups: list[list[str]]) -> str:
        """The query in FTS5 (``("medic"* OR "medici") AND ("cluj"*)``) or tsquery syntax."""
        quote, prefix, any_of, all_of = ('"{}"', "*", " OR ", " AND ") if self.sqlite else ("{}", ":*", " | ", " & ")
        parts = []
        for first, *others in groups:
            words = [quote.format(first) + (prefix if len(first) >= MIN_PREFIX else "")]
            words.extend(quote.format(word) for word in others)
            parts.append("(" + any_of.join(words) + ")")
        return all_of.join(parts)

    def _matching(self, groups: list[list[str]]) -> tuple[Select[uuid.UUID], ColumnElement[Any]]:
        """Matching authorities (their ids) and the rank of each, best lowest."""
        expression = self._expression(groups)
        if self.sqlite:
            statement = (
                select(Authority.id)
                .join(_sqlite_rows, _sqlite_rows.c.authority_id == Authority.id)
                # "+rowid": no rowid lookups in the index; its matches lead, each then finds its row.
                .join(_sqlite_fts, literal_column("+directory_fts.rowid") == _sqlite_rows.c.id)
                .where(sql_text("directory_fts MATCH :match").bindparams(match=expression), *self.conditions)
            )
            return statement, literal_column(_BM25)
        tsquery = func.to_tsquery(literal_column("'simple'"), expression)
        statement = (
            select(Authority.id)
            .join(_pg_fts, _pg_fts.c.authority_id == Authority.id)
            .where(_pg_fts.c.vector.bool_op("@@")(tsquery), *self.conditions)
        )
        return statement, -func.ts_rank(_pg_fts.c.vector, tsquery)

    async def count(self, session: AsyncSession, groups: list[list[str]]) -> int:
        statement, _ = self._matching(groups)
        return (await session.execute(statement.with_only_columns(func.count()))).scalar_one()

    def best(self, groups: list[list[str]], limit: int, offset: int) -> Subquery:
        statement, rank = self._matching(groups)
        return (
            statement.add_columns(rank.label("rank"))
            .order_by(rank, Authority.informal_name, Authority.id)
            .limit(limit)
            .offset(offset)
            .subquery("best")
        )


@asynccontextmanager
async def _index_only(session: AsyncSession) -> AsyncIterator[None]:
    """PostgreSQL: searches read the GIN indexes, never every row. The planner does not know that
    each tsvector is read from TOAST and prefers a scan of the whole table (or of its primary key),
    40 times slower with 20,000 authorities; with sequential and plain index scans off, it takes
    bitmap scans of the GIN index (and of the primary keys for the joins). The settings are local
    to the transaction and restored after."""
    if _dialect(session) != "postgresql":
        yield
        return
    settings = ("enable_seqscan", "enable_indexscan")
    before = (
        await session.execute(
            select(
                *(func.current_setting(name) for name in settings),
                *(func.set_config(name, "off", True) for name in settings),
            )
        )
    ).one()
    yield
    await session.execute(
        select(
            *(func.set_config(name, value, True) for name, value in zip(settings, before[: len(settings)], strict=True))
        )
    )


def trigrams(word: str) -> set[str]:
    """The trigrams of a word as pg_trgm counts them (two spaces before, one after)."""
    padded = f"  {word} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def similarity(a: str, b: str) -> float:
    """pg_trgm's similarity: shared trigrams over all trigrams of both words."""
    first, second = trigrams(a), trigrams(b)
    return len(first & second) / len(first | second)


async def near_words(session: AsyncSession, term: str) -> list[str]:
    """Up to ``NEAR_WORDS`` words of the names and keywords in the index that look much like
    ``term`` (trigram similarity at least ``NEAR_SIMILARITY``), most alike first.

    PostgreSQL: the word list and its trigram index (pg_trgm). SQLite: the FTS5 vocabulary, words
    of the same first letter and about the same length, compared here.
    """
    if len(term) < 3:
        return []
    if _dialect(session) == "postgresql":
        alike = func.similarity(_pg_words.c.word, term)
        found = await session.execute(
            select(_pg_words.c.word)
            .where(_pg_words.c.word.bool_op("%")(literal(term)), alike >= NEAR_SIMILARITY)
            .order_by(alike.desc(), _pg_words.c.word)
            .limit(NEAR_WORDS)
        )
        return [word for word in found.scalars() if word != term]
    await session.execute(
        sql_text(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.directory_fts_vocab USING fts5vocab(main, directory_fts, 'col')"
        )
    )
    candidates = await session.execute(
        sql_text(
            "SELECT DISTINCT term FROM temp.directory_fts_vocab WHERE term >= :low AND term < :high"
            " AND col IN ('names', 'keywords') AND length(term) BETWEEN :shortest AND :longest"
        ).bindparams(low=term[0], high=chr(ord(term[0]) + 1), shortest=len(term) - 2, longest=len(term) + 2)
    )
    scored = sorted(
        ((similarity(term, word), word) for word in candidates.scalars() if word != term),
        key=lambda pair: (-pair[0], pair[1]),
    )
    return [word for score, word in scored[:NEAR_WORDS] if score >= NEAR_SIMILARITY]


async def _areas_of(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    areas: dict[uuid.UUID, list[str]] = {}
    if ids:
        for row in await session.execute(
            select(AuthorityArea.authority_id, AuthorityArea.area).where(AuthorityArea.authority_id.in_(ids))
        ):
            areas.setdefault(row.authority_id, []).append(row.area)
    return areas
