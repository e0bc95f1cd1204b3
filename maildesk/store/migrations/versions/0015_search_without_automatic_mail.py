"""search: our automatic mail is no longer indexed

Search has left out our automatic mail (acknowledgements, notices, surveys: kind `auto`)
since issue 18, but only in its queries: the index still held every one of them. An
acknowledgement is template text, identical from ticket to ticket, and there is one for
most customer mails, so indexing it cost the worker about 7% of its CPU per incoming mail
(SQLite, 2,000 mails, 3 alternating rounds: 1,978/1,873/2,162 -> 1,835/1,819/1,987 µs, issue
17) and made every search for a template's words match, then drop, most tickets.

SQLite: the FTS5 triggers of 0002 skip rows of an excluded kind (an update that changes
a row's kind moves it in or out of the index); the index is emptied and filled again from
the mail it should hold. PostgreSQL: the generated `search_vector` is NULL for those rows
(the column is made again: a generated expression cannot be altered before PostgreSQL 17),
and its GIN index with it.

Note for later migrations: a SQLite batch "move and copy" of `messages` drops these
triggers; recreate them with SQLITE_TRIGGERS below (not 0002's) after such a migration.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The kinds the index leaves out (store/desk_queries.py SEARCH_EXCLUDED_KINDS as of this
# revision; a migration keeps its own copy, as history).
EXCLUDED = "('auto')"

SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS messages_fts_au",
    "DROP TRIGGER IF EXISTS messages_fts_ad",
    "DROP TRIGGER IF EXISTS messages_fts_ai",
]
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages WHEN new.kind NOT IN {EXCLUDED} BEGIN "
    "INSERT INTO messages_fts(rowid, subject, visible_text) VALUES (new.id, new.subject, new.visible_text); END",
    f"CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages WHEN old.kind NOT IN {EXCLUDED} BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, visible_text) "
    "VALUES ('delete', old.id, old.subject, old.visible_text); END",
    "CREATE TRIGGER messages_fts_au AFTER UPDATE OF subject, visible_text, kind ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, visible_text) "
    f"SELECT 'delete', old.id, old.subject, old.visible_text WHERE old.kind NOT IN {EXCLUDED}; "
    "INSERT INTO messages_fts(rowid, subject, visible_text) "
    f"SELECT new.id, new.subject, new.visible_text WHERE new.kind NOT IN {EXCLUDED}; END",
]
SQLITE_REFILL = [
    "INSERT INTO messages_fts(messages_fts) VALUES ('delete-all')",
    "INSERT INTO messages_fts(rowid, subject, visible_text) "
    f"SELECT id, subject, visible_text FROM messages WHERE kind NOT IN {EXCLUDED}",
]
# 0002's triggers, for the way down (the index then holds every message again).
SQLITE_0002_TRIGGERS = [
    "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, subject, visible_text) VALUES (new.id, new.subject, new.visible_text); END",
    "CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, visible_text) "
    "VALUES ('delete', old.id, old.subject, old.visible_text); END",
    "CREATE TRIGGER messages_fts_au AFTER UPDATE OF subject, visible_text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, visible_text) "
    "VALUES ('delete', old.id, old.subject, old.visible_text); "
    "INSERT INTO messages_fts(rowid, subject, visible_text) VALUES (new.id, new.subject, new.visible_text); END",
]

PG_VECTOR_0002 = (
    "setweight(to_tsvector('english'::regconfig, coalesce(subject, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(visible_text, '')), 'B')"
)
PG_VECTOR = f"CASE WHEN kind IN {EXCLUDED} THEN NULL ELSE {PG_VECTOR_0002} END"


def _pg_vector(expression: str) -> list[str]:
    return [
        "DROP INDEX IF EXISTS ix_messages_search",
        "ALTER TABLE messages DROP COLUMN IF EXISTS search_vector",
        f"ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({expression}) STORED",
        "CREATE INDEX ix_messages_search ON messages USING gin (search_vector)",
    ]


def _run(statements: list[str]) -> None:
    for sql in statements:
        op.execute(sql)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_DROP + SQLITE_TRIGGERS + SQLITE_REFILL)
    elif dialect == "postgresql":
        _run(_pg_vector(PG_VECTOR))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_DROP + SQLITE_0002_TRIGGERS + ["INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')"])
    elif dialect == "postgresql":
        _run(_pg_vector(PG_VECTOR_0002))
