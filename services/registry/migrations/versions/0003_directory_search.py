"""Full-text search of the directory (rule S1, "Search")

A document in ``directory_documents`` has three sections separated by ``|``: names, keywords,
profiles (see ``services.registry.directory``). On both databases the search index lives in tables
named ``directory_fts*``, listed in ``metadata.info["unmanaged_tables"]`` so that schema comparisons
leave them alone, and kept in sync with ``directory_documents`` by triggers.

SQLite: ``directory_fts`` is a contentless FTS5 table (``unicode61 remove_diacritics 2``), one
column per section; ``directory_fts_content`` maps its rowids to authorities. Contentless, because
reading the authority of each match from an FTS5 content row would read the whole document: a
search matching thousands took seconds. The mapping has an INTEGER PRIMARY KEY, so VACUUM or a
dump and restore never renumber it (``directory_documents`` has none). A contentless table forgets
a row only when given the very values it indexed: the triggers give them from the old document.

PostgreSQL: pg_trgm; ``directory_fts`` holds each document's weighted ``tsvector`` (names A,
keywords B, profiles D; stored, so that ranking never parses documents again) with a GIN index;
``directory_fts_idx`` the words of all names and keywords with a GIN trigram index, to find the
near spellings of a word that matches nothing.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# SQLite: the three sections of a document (as SQLITE_SECTIONS in services.registry.directory).
_REST = "substr({d}, instr({d}, '|') + 1)"
_SECTIONS = (
    "substr({d}, 1, instr({d}, '|') - 1)",
    "substr(" + _REST + ", 1, instr(" + _REST + ", '|') - 1)",
    "substr(" + _REST + ", instr(" + _REST + ", '|') + 1)",
)


def _sections(document: str) -> str:
    return ", ".join(part.format(d=document) for part in _SECTIONS)


_SQLITE_FORGET = (
    "INSERT INTO directory_fts (directory_fts, rowid, names, keywords, profiles) "
    f"SELECT 'delete', id, {_sections('old.document')} FROM directory_fts_content "
    "WHERE authority_id = old.authority_id;"
)
_SQLITE_INDEX = (
    "INSERT INTO directory_fts (rowid, names, keywords, profiles) "
    f"SELECT id, {_sections('new.document')} FROM directory_fts_content WHERE authority_id = new.authority_id;"
)

_PG_SYNC = """
CREATE FUNCTION directory_fts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    vector tsvector := setweight(to_tsvector('simple', split_part(NEW.document, '|', 1)), 'A')
        || setweight(to_tsvector('simple', split_part(NEW.document, '|', 2)), 'B')
        || setweight(to_tsvector('simple', split_part(NEW.document, '|', 3)), 'D');
BEGIN
    INSERT INTO directory_fts (authority_id, vector) VALUES (NEW.authority_id, vector)
    ON CONFLICT (authority_id) DO UPDATE SET vector = EXCLUDED.vector;
    -- The words of the names and keywords, for near spellings; in sorted order (lexemes are),
    -- so that concurrent transactions adding the same new words wait instead of deadlocking.
    INSERT INTO directory_fts_idx (word)
    SELECT unnest(tsvector_to_array(ts_filter(vector, '{a,b}'))) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(
            "CREATE TABLE directory_fts_content ("
            "id INTEGER NOT NULL PRIMARY KEY, authority_id CHAR(32) NOT NULL UNIQUE)"
        )
        op.execute(
            "CREATE VIRTUAL TABLE directory_fts USING fts5("
            "names, keywords, profiles, content = '', tokenize = 'unicode61 remove_diacritics 2')"
        )
        op.execute(
            "CREATE TRIGGER directory_fts_insert AFTER INSERT ON directory_documents BEGIN "
            "INSERT INTO directory_fts_content (authority_id) VALUES (new.authority_id); "
            f"{_SQLITE_INDEX} END"
        )
        op.execute(
            "CREATE TRIGGER directory_fts_update AFTER UPDATE OF document ON directory_documents BEGIN "
            f"{_SQLITE_FORGET} {_SQLITE_INDEX} END"
        )
        op.execute(
            "CREATE TRIGGER directory_fts_delete AFTER DELETE ON directory_documents BEGIN "
            f"{_SQLITE_FORGET} DELETE FROM directory_fts_content WHERE authority_id = old.authority_id; END"
        )
        op.execute("INSERT INTO directory_fts_content (authority_id) SELECT authority_id FROM directory_documents")
        op.execute(
            "INSERT INTO directory_fts (rowid, names, keywords, profiles) "
            f"SELECT m.id, {_sections('d.document')} FROM directory_documents AS d "
            "JOIN directory_fts_content AS m ON m.authority_id = d.authority_id"
        )
    elif dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE TABLE directory_fts ("
            " authority_id uuid NOT NULL CONSTRAINT directory_fts_pkey PRIMARY KEY"
            " CONSTRAINT directory_fts_authority_id_fkey REFERENCES directory_documents (authority_id)"
            " ON DELETE CASCADE,"
            " vector tsvector NOT NULL)"
        )
        op.execute("CREATE INDEX directory_fts_vector ON directory_fts USING gin (vector)")
        op.execute("CREATE TABLE directory_fts_idx (word text NOT NULL CONSTRAINT directory_fts_idx_pkey PRIMARY KEY)")
        op.execute("CREATE INDEX directory_fts_idx_trgm ON directory_fts_idx USING gin (word gin_trgm_ops)")
        op.execute(_PG_SYNC)
        op.execute(
            "CREATE TRIGGER directory_fts_sync AFTER INSERT OR UPDATE OF document ON directory_documents "
            "FOR EACH ROW EXECUTE FUNCTION directory_fts_sync()"
        )
        op.execute("UPDATE directory_documents SET document = document")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("directory_fts_update", "directory_fts_delete", "directory_fts_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS directory_fts")
        op.execute("DROP TABLE IF EXISTS directory_fts_content")
    elif dialect == "postgresql":
        # pg_trgm stays: other objects of the database may use it.
        op.execute("DROP TRIGGER IF EXISTS directory_fts_sync ON directory_documents")
        op.execute("DROP FUNCTION IF EXISTS directory_fts_sync()")
        op.execute("DROP TABLE IF EXISTS directory_fts_idx")
        op.execute("DROP TABLE IF EXISTS directory_fts")
