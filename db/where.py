"""Conditions whose SQL is built once per shape and whose values are bound on every execution.

Building a SQLAlchemy statement costs tens to hundreds of microseconds, more than running it on
a small page. So a read keeps its statement in a cache keyed by its shape (which conditions,
which columns, which ordering), and every value (a filter's, the viewer's id, a cursor's, the
page size) travels as a named parameter. A `Where` carries both halves: `shape` and the
`makers` that build its clauses (called only when the cache has no statement for the shape),
and the `params` to bind. Bind parameters are `required`: a value missing at execution is an
error, never a value left over from another request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, false

Maker = Callable[[], ColumnElement[bool]]


@dataclass(frozen=True, slots=True)
class Where:
    shape: tuple[Hashable, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    makers: tuple[Maker, ...] = field(default=(), compare=False, hash=False)

    def __and__(self, other: Where) -> Where:
        return Where(
            shape=self.shape + other.shape,
            params={**self.params, **other.params},
            makers=self.makers + other.makers,
        )

    def clauses(self) -> list[ColumnElement[bool]]:
        return [make() for make in self.makers]


EVERYTHING = Where()


def param(name: str, type_: Any = None) -> BindParameter[Any]:
    """A named, required parameter: its value comes with each execution."""
    return bindparam(name, type_=type_, required=True)


def condition(name: str, value: Any, make: Callable[[BindParameter[Any]], ColumnElement[bool]]) -> Where:
    """A condition on one value, e.g. condition("author_id", 5, lambda p: posts.c.user_id == p).

    Text holding U+0000 matches nothing: no stored text holds it (every write refuses it), and
    PostgreSQL cannot even compare it, so it never reaches the database."""
    if holds_nul(value):
        return fixed((name, "nothing"), false)
    return Where(shape=(name,), params={name: value}, makers=(lambda: make(param(name)),))


def holds_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def fixed(name: Hashable, make: Maker) -> Where:
    """A condition with no value of its own (or only values other conditions bind)."""
    return Where(shape=(name,), makers=(make,))


def all_of(*wheres: Where) -> Where:
    combined = EVERYTHING
    for where in wheres:
        combined = combined & where
    return combined


def like_escape(text: str) -> str:
    """`text` for LIKE ... ESCAPE '/': its % and _ match themselves."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")
