"""Statements compiled once into an engine's SQL text with positional parameters, for the
connections that run text (db/read_connections.py): the compiled reads and writes
(schema/compiled/sql.py) and the idempotency keys' one-statement writes (db/idempotency.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect


class NamedParameters(Exception):
    """The engine's driver takes named parameters, which the text connections do not pass."""


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    """A statement's text and, in order, the parameters it takes, each through its type's
    processor (SQLite keeps timestamps as text, say)."""

    sql: str
    names: tuple[str, ...]
    processors: Mapping[str, Callable[[Any], Any]]
    constants: Mapping[str, Any]  # values SQLAlchemy bound itself (LIMIT 1, say)

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        processors, given = self.processors, {**self.constants, **params}
        return tuple(
            processors[name](given[name]) if name in processors else given[name] for name in self.names
        )


def compile_positional(
    statement: Any, dialect: Dialect, *, unprocessed: Collection[str] = ()
) -> CompiledStatement:
    """`statement` for `dialect`; the parameters named in `unprocessed` are passed as given."""
    compiled = statement.compile(dialect=dialect)
    if not compiled.positional:
        raise NamedParameters(f"{dialect.name} takes named parameters")
    names = tuple(compiled.positiontup or ())
    processors: dict[str, Any] = {
        name: compiled._bind_processors[name]
        for name in names
        if name in compiled._bind_processors and name not in unprocessed
    }
    constants = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
    return CompiledStatement(compiled.string, names, processors, constants)
