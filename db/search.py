"""Full-text search of a table's text columns, on each engine's own index. No GraphQL.

What a search is, the same on every engine: the words of the text (letters and digits; every
other character only separates words, so quotes, operators and markup can never reach an
engine's query syntax), all of which a row must hold, best matches first.

Where each engine keeps its index (migration 0010 makes them; none is in db/models.py, so the
ORM never reads or writes them):

- PostgreSQL: a generated `tsvector` column, `search_vector` (title weighted above content,
  the `english` configuration: stemmed, stop words dropped), with a GIN index.
- SQLite: an FTS5 table, `<table>_search`, holding no copy of the text (external content),
  kept up to date by triggers; the `porter` tokenizer stems, and accents are folded.
- MariaDB: a FULLTEXT index on a generated column, `search_text` (title and content in a
  case- and accent-insensitive collation: the table's own collation is binary). InnoDB does not
  stem, ignores words shorter than 3 letters and its stop words; such words are dropped from
  the query rather than required (a required stop word would match nothing).

A row's rank is the engine's relevance (ts_rank, bm25, MATCH ... AGAINST) scaled to an integer,
so that a cursor holds it exactly and both read paths print it alike. Ranks differ from engine
to engine; on SQLite and MariaDB they also depend on the whole table (how rare a word is), so
a page cursor taken before other posts are written can land a little off.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import BigInteger, Boolean, ColumnElement, String, TypeDecorator, false
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.functions import FunctionElement

from db.where import Where, param

MAX_SEARCH_LENGTH = 200  # characters; a search box, not a document
SCALE = 1_000_000_000  # a rank is kept to nine decimals (MariaDB's can be 1e-9)

_WORDS = re.compile(r"[^\W_]+")

# InnoDB's default stop words (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD; a test compares).
INNODB_STOPWORDS = frozenset(
    {
        *("a", "about", "an", "are", "as", "at", "be", "by", "com", "de", "en", "for", "from"),
        *("how", "i", "in", "is", "it", "la", "of", "on", "or", "that", "the", "this", "to"),
        *("was", "what", "when", "where", "who", "will", "with", "und", "www"),
    }
)
INNODB_MIN_WORD = 3  # innodb_ft_min_token_size

PG_CONFIG = "english"
SQLITE_WEIGHTS = "4.0, 1.0"  # bm25 weight of the FTS table's columns: title, content


def words(text: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(text)]


class SearchWords(TypeDecorator[str]):
    """The words of a search (space-separated), as the engine's query wants them."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        found = value.split()
        if dialect.name == "sqlite":  # phrases of one word each: FTS5 ANDs them
            return " ".join(f'"{word}"' for word in found)
        if dialect.name in ("mysql", "mariadb"):
            kept = [w for w in found if len(w) >= INNODB_MIN_WORD and w not in INNODB_STOPWORDS]
            return " ".join(f"+{word}" for word in kept)
        return " ".join(found)  # plainto_tsquery ANDs them


def search_where(id_column: Any, text: str, name: str = "search") -> Where:
    """Rows of the table that hold every word of `text` (none when it has no words), with the
    words bound as `name`, which the rank (`search_rank`) reads too."""
    found = words(text)
    if not found:
        # The rank still reads the parameter, so it is bound, to a word nothing is searched for.
        return Where(shape=(name, "nothing"), params={name: "nothing"}, makers=(false,))
    return Where(
        shape=(name,),
        params={name: " ".join(found)},
        makers=(lambda: Matches(id_column, param(name, SearchWords())),),
    )


def search_rank(id_column: Any, name: str = "search") -> ColumnElement[int]:
    """The relevance of a row to the search bound as `name` (higher is better)."""
    return Rank(id_column, param(name, SearchWords()))


class Matches(FunctionElement[bool]):
    """Whether the row of `id` holds the words bound (its clauses: the id column, the words)."""

    type = Boolean()
    inherit_cache = True
    name = "search_matches"


class Rank(FunctionElement[int]):
    """The row's relevance to the words bound, scaled to an integer."""

    type = BigInteger()
    inherit_cache = True
    name = "search_rank"


def _parts(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> tuple[str, str, Any]:
    """The id column's SQL, the bound words' SQL, and the table (or alias) the id belongs to."""
    id_column, words_bound = list(element.clauses)
    table: Any = id_column.table
    return compiler.process(id_column, **kw), compiler.process(words_bound, **kw), table


def _column(table: Any, name: str, type_: Any, compiler: SQLCompiler, **kw: Any) -> str:
    """A column of the row's table (or alias) that the model does not declare."""
    return compiler.process(ColumnClause(name, type_, _selectable=table), **kw)


def _base_name(table: Any) -> str:
    return str(getattr(table, "element", table).name)  # an alias's table


@compiles(Matches, "postgresql")
def _pg_matches(element: Matches, compiler: SQLCompiler, **kw: Any) -> str:
    _, bound, table = _parts(element, compiler, **kw)
    vector = _column(table, "search_vector", TSVECTOR(), compiler, **kw)
    return f"{vector} @@ plainto_tsquery('{PG_CONFIG}', {bound})"


@compiles(Rank, "postgresql")
def _pg_rank(element: Rank, compiler: SQLCompiler, **kw: Any) -> str:
    _, bound, table = _parts(element, compiler, **kw)
    vector = _column(table, "search_vector", TSVECTOR(), compiler, **kw)
    # Normalization 1: divided by 1 + log(length), so long posts do not win by length alone.
    return f"CAST(ts_rank({vector}, plainto_tsquery('{PG_CONFIG}', {bound}), 1) * {SCALE} AS BIGINT)"


@compiles(Matches, "sqlite")
def _sqlite_matches(element: Matches, compiler: SQLCompiler, **kw: Any) -> str:
    pk, bound, table = _parts(element, compiler, **kw)
    fts = f"{_base_name(table)}_search"
    return f"{pk} IN (SELECT rowid FROM {fts} WHERE {fts} MATCH {bound})"


@compiles(Rank, "sqlite")
def _sqlite_rank(element: Rank, compiler: SQLCompiler, **kw: Any) -> str:
    pk, bound, table = _parts(element, compiler, **kw)
    fts = f"{_base_name(table)}_search"
    # bm25 is only known inside a full-text query (lower is better there). Asked once per row,
    # that query would read every match each time; as a derived table (kept whole by LIMIT -1)
    # it runs once, and SQLite looks each row up in an automatic index on it.
    score = f"-bm25({fts}, {SQLITE_WEIGHTS})"
    scores = f"SELECT rowid AS k, {score} AS score FROM {fts} WHERE {fts} MATCH {bound} LIMIT -1"
    return f"CAST(ROUND((SELECT score FROM ({scores}) WHERE k = {pk}) * {SCALE}) AS INTEGER)"


def _mariadb_match(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    _, bound, table = _parts(element, compiler, **kw)
    text = _column(table, "search_text", String(), compiler, **kw)
    return f"MATCH ({text}) AGAINST ({bound} IN BOOLEAN MODE)"


@compiles(Matches, "mysql")
@compiles(Matches, "mariadb")
def _mariadb_matches(element: Matches, compiler: SQLCompiler, **kw: Any) -> str:
    # A comparison: a bare boolean gets "= 1" appended here, and a relevance is rarely 1.
    return f"({_mariadb_match(element, compiler, **kw)} > 0)"


@compiles(Rank, "mysql")
@compiles(Rank, "mariadb")
def _mariadb_rank(element: Rank, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(ROUND({_mariadb_match(element, compiler, **kw)} * {SCALE}) AS SIGNED)"


# What each searchable table's index holds (migration 0010), in the FTS5 table's column order.
SEARCHED_COLUMNS = {"posts": ("title", "content")}

# The objects migration 0010 makes that db/models.py does not declare (alembic/env.py leaves
# them out of `alembic check`).
SEARCH_COLUMNS = frozenset({"search_vector", "search_text"})
SEARCH_INDEXES = frozenset({"ix_posts_search_vector", "ix_posts_search_text"})
SEARCH_TABLES = ("posts_search",)  # and FTS5's shadow tables, posts_search_*
