"""Look ahead at what a query selects, so the SQL loads only what it needs.

Each type declares which columns each of its GraphQL fields reads, and which to-one relations a
page of it can bring along (`Shape`). A resolver asks for the columns its result's selection
needs; a page also learns which related objects to load with it. Fragments and inline fragments
are followed whatever their type condition, and @skip/@include are ignored: loading a column
too many is harmless, loading one too few is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode

if TYPE_CHECKING:
    from schema.context import Info

Columns = Mapping[str, tuple[str, ...]]  # GraphQL field name -> columns it reads
Related = tuple[tuple[str, frozenset[str]], ...]  # (to-one relation, the related object's columns)


@dataclass(frozen=True)
class Shape:
    """How a GraphQL type reads from its table."""

    columns: Columns
    # To-one relations a page of this type loads along with its rows (relation -> the target's shape).
    related: Mapping[str, Shape] = field(default_factory=dict)


USER = Shape(
    {
        "username": ("username",),
        "email": ("email",),
        "avatarUrl": ("image_file",),
        "isSuperuser": ("is_superuser",),
        "createdAt": ("created_at",),
    }
)
POST = Shape(
    {"title": ("title",), "content": ("content",), "datePosted": ("date_posted",), "author": ("user_id",)},
    related={"author": USER},
)
TASK = Shape(
    {"title": ("title",), "status": ("status",), "createdAt": ("created_at",), "owner": ("owner_id",)},
    related={"owner": USER},
)
NOTE = Shape({"body": ("body",), "createdAt": ("created_at",), "task": ("task_id",)}, related={"task": TASK})

CONNECTION_NODE = ("edges", "node")


def _fields(
    selection_sets: Iterable[SelectionSetNode | None], fragments: Mapping[str, Any]
) -> list[FieldNode]:
    found: list[FieldNode] = []
    pending = [selection_set for selection_set in selection_sets if selection_set is not None]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
                pending.append(fragments[selection.name.value].selection_set)
    return found


def _selected_names(info: Info, path: tuple[str, ...]) -> frozenset[str]:
    raw = info._raw_info
    fragments = raw.fragments
    level = _fields((node.selection_set for node in raw.field_nodes), fragments)
    for step in path:
        level = _fields((node.selection_set for node in level if node.name.value == step), fragments)
    return frozenset(node.name.value for node in level)


def _cached(info: Info, key: Any, compute: Any) -> Any:
    # Computed once per field of the query document (siblings share it): a list of 50 users
    # asking for `posts` pays for one look-ahead, not 50.
    cache = info.context.selection_cache
    key = (id(info._raw_info.field_nodes[0]), *key)
    found = cache.get(key)
    if found is None:
        found = cache[key] = compute()
    return found


def selects(info: Info, path: tuple[str, ...]) -> frozenset[str]:
    """The field names selected at `path` below this field."""
    result: frozenset[str] = _cached(info, ("names", path), lambda: _selected_names(info, path))
    return result


def columns_for(info: Info, shape: Shape, *, path: tuple[str, ...] = ()) -> frozenset[str]:
    """The columns the selection at `path` below this field reads from `shape`'s table."""

    def compute() -> frozenset[str]:
        return frozenset(column for name in selects(info, path) for column in shape.columns.get(name, ()))

    result: frozenset[str] = _cached(info, ("columns", path, id(shape)), compute)
    return result


def related_for(info: Info, shape: Shape, *, path: tuple[str, ...]) -> Related:
    """The to-one relations selected at `path`, each with the columns its own selection reads."""

    def compute() -> Related:
        names = selects(info, path)
        return tuple(
            (name, columns_for(info, target, path=(*path, name)))
            for name, target in sorted(shape.related.items())
            if name in names
        )

    result: Related = _cached(info, ("related", path, id(shape)), compute)
    return result
