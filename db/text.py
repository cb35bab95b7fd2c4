"""Text matching that can use an index on both engines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import NullType

from db.where import Where, fixed, holds_nul, param


class _StartsWith(ColumnElement[bool]):
    """Case-sensitive prefix match of `column`, the prefix bound as prefix_glob / prefix_like.

    SQLite's LIKE ignores case, and then cannot use a plain index, so SQLite gets GLOB;
    PostgreSQL gets LIKE, which a varchar_pattern_ops index serves; MySQL/MariaDB get LIKE on
    the utf8mb4_bin column (case-sensitive), which its plain index serves. The two dialects escape the
    prefix differently, so both forms are bound and each dialect reads its own.
    """

    inherit_cache = True
    # The parameters are children too, so that a statement holding several can rename them.
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("glob_param", InternalTraversal.dp_clauseelement),
        ("like_param", InternalTraversal.dp_clauseelement),
    ]
    # Not Boolean: SQLite would render "x GLOB ? = 1", which no index can serve.
    type = NullType()  # type: ignore[assignment]

    def __init__(self, column: ColumnElement[str]) -> None:
        self.column = column
        self.glob_param = param("prefix_glob")
        self.like_param = param("prefix_like")


def starts_with(column: ColumnElement[str], prefix: str) -> Where:
    if holds_nul(prefix):
        return fixed(("starts_with", column.key, "nothing"), false)
    glob = "".join(f"[{char}]" if char in "*?[" else char for char in prefix) + "*"
    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return Where(
        shape=("starts_with", column.key),
        params={"prefix_glob": glob, "prefix_like": like},
        makers=(lambda: _StartsWith(column),),
    )


@compiles(_StartsWith, "sqlite")
def _starts_with_sqlite(element: _StartsWith, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} GLOB {compiler.process(element.glob_param, **kw)}"


@compiles(_StartsWith, "mysql")
@compiles(_StartsWith, "mariadb")
def _starts_with_mysql(element: _StartsWith, compiler: SQLCompiler, **kw: Any) -> str:
    # MySQL string literals treat a backslash as an escape: '\\' is the one-character escape.
    pattern = compiler.process(element.like_param, **kw)
    return f"{compiler.process(element.column, **kw)} LIKE {pattern} ESCAPE '\\\\'"


@compiles(_StartsWith)
def _starts_with_default(element: _StartsWith, compiler: SQLCompiler, **kw: Any) -> str:
    pattern = compiler.process(element.like_param, **kw)
    return f"{compiler.process(element.column, **kw)} LIKE {pattern} ESCAPE '\\'"
