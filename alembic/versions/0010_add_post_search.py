"""add full-text search of posts: each engine's own index (db/search.py says what it reads)

PostgreSQL: a generated tsvector column with a GIN index. SQLite: an FTS5 table over the posts'
text (external content) kept by triggers. MariaDB: a FULLTEXT index on a generated column in a
case- and accent-insensitive collation. None of these is in db/models.py.

On SQLite a later migration that rebuilds `posts` in batch mode drops the triggers with the old
table: it must make them again (TRIGGERS below) and rebuild the index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_VECTOR = (
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(content, '')), 'B')"
)

SQLITE_TABLE = (
    "CREATE VIRTUAL TABLE posts_search USING fts5(title, content, content='posts', "
    "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"
)
_FORGET = "INSERT INTO posts_search(posts_search, rowid, title, content) VALUES ('delete', old.id, old.title, old.content);"
_LEARN = "INSERT INTO posts_search(rowid, title, content) VALUES (new.id, new.title, new.content);"
TRIGGERS = {
    "posts_search_insert": f"AFTER INSERT ON posts BEGIN {_LEARN} END",
    "posts_search_delete": f"AFTER DELETE ON posts BEGIN {_FORGET} END",
    "posts_search_update": f"AFTER UPDATE OF title, content ON posts BEGIN {_FORGET} {_LEARN} END",
}


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute(f"ALTER TABLE posts ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({PG_VECTOR}) STORED")
        op.execute("CREATE INDEX ix_posts_search_vector ON posts USING gin (search_vector)")
    elif dialect == "sqlite":
        op.execute(SQLITE_TABLE)
        for name, body in TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
        op.execute("INSERT INTO posts_search(posts_search) VALUES ('rebuild')")
    else:  # MariaDB
        op.execute(
            "ALTER TABLE posts ADD COLUMN search_text MEDIUMTEXT CHARACTER SET utf8mb4 "
            "COLLATE utf8mb4_unicode_ci AS (CONCAT_WS(' ', title, content)) STORED, "
            "ADD FULLTEXT INDEX ix_posts_search_text (search_text)"
        )


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute("DROP INDEX ix_posts_search_vector")
        op.execute("ALTER TABLE posts DROP COLUMN search_vector")
    elif dialect == "sqlite":
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE posts_search")
    else:
        op.execute("ALTER TABLE posts DROP INDEX ix_posts_search_text, DROP COLUMN search_text")
