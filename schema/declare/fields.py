"""Field declarations: one line per field says what it reads; both read paths follow it.

    title: str = column()                              # the column of the same name
    email: str | None = column(rule=can_see_email)     # NULL where the rule does not hold
    avatar_url: str = expression(avatar_sql, reads=("image_file",))
    author: Annotated[User, strawberry.lazy(...)] = to_one("user_id")
    posts: Connection[Annotated[Post, strawberry.lazy(...)]] = connection("user_id")

The resolvers these make hand the work to the operation's loaders
(`info.context.loaders`, schema/execution/loaders.py); the compiled planner
(schema/compiled/planner.py) reads the same declarations to write one SQL statement.
A filter input's fields are declared the same way: `title_contains: str | None = contains("title")`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from sqlalchemy import ColumnElement
from strawberry import UNSET
from strawberry.annotation import StrawberryAnnotation
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver
from strawberry.types.lazy_type import LazyType

from db.search import MAX_SEARCH_LENGTH
from schema.declare.aggregates import connection_type
from schema.declare.nodes import NodeType, node_type_of
from schema.declare.specs import (
    BY,
    SPEC,
    ColumnSpec,
    Condition,
    ConnectionSpec,
    CountCondition,
    EntitySpec,
    ExpressionSpec,
    Key,
    LookupSpec,
    NodeSpec,
    Rule,
    ToOneSpec,
    ViewerSpec,
)

# Scalars.


def column(name: str | None = None, *, rule: Rule | None = None, description: str | None = None) -> Any:
    """A scalar printed from the column `name` (default: the field's name). With a `rule`
    (db/visibility.py), it is null on rows where the rule does not hold for the viewer."""
    return strawberry.field(default=None, description=description, metadata={SPEC: ColumnSpec(name, rule)})


def expression(
    make: Callable[..., ColumnElement[Any]], *, reads: tuple[str, ...], description: str | None = None
) -> Any:
    """A scalar computed in SQL from the row's `reads` columns by `make(*columns)`; the resolvers
    select the same expression, so it is written once."""
    spec = ExpressionSpec(None, make, reads)
    return strawberry.field(default=None, description=description, metadata={SPEC: spec})


# Relations.


def to_one(link: str, *, description: str | None = None) -> Any:
    """The object whose id this type's `link` column holds (its type is the field's type)."""
    spec = ToOneSpec(link)

    def resolve(root: Any, info: strawberry.Info) -> Any:
        # Not awaited here: a loaded object completes at once, and graphql-core awaits the
        # loader's future otherwise (a coroutine here would cost a task per row).
        return info.context.loaders.to_one(info, spec, root)

    return strawberry.field(resolver=resolve, description=description, metadata={SPEC: spec})


SEARCH_DOC = (
    f"Only the rows holding every word of this text (at most {MAX_SEARCH_LENGTH} characters; "
    "anything but letters and digits only separates words), best matches first unless `orderBy` "
    "says otherwise. Matching follows the database: PostgreSQL and SQLite match word forms "
    "(`run` finds `running`), MariaDB whole words of 3 letters or more."
)


def connection(link: str | None = None, *, description: str | None = None) -> Any:
    """A page of the node type's rows: those whose `link` column holds this row's id, or (no
    link, on a root type) all the viewer may see. Its arguments (first/after/last/before,
    filter, orderBy) come from the node type's declaration (schema/declare/nodes.py)."""
    spec = ConnectionSpec(link)

    def resolve(root: Any, info: strawberry.Info, **arguments: Any) -> Any:
        return info.context.loaders.connection(info, spec, root, arguments)

    return _ConnectionField(
        base_resolver=StrawberryResolver(resolve), description=description, metadata={SPEC: spec}
    )


class _ConnectionField(StrawberryField):
    """A connection's arguments depend on its node type, which a lazy annotation names: they
    are made when the schema is built, once every node type is declared."""

    @property
    def arguments(self) -> list[StrawberryArgument]:
        if self._arguments is None:
            node_type = connection_node_type(self)
            self._arguments = [
                argument("first", int | None),
                argument("after", str | None),
                argument("last", int | None),
                argument("before", str | None),
                *([argument("filter", node_type.filter | None)] if node_type.filter is not None else []),
                argument("order_by", node_type.order | None),
                *([argument("search", str | None, description=SEARCH_DOC)] if node_type.searchable else []),
            ]
        return self._arguments

    @arguments.setter
    def arguments(self, value: list[StrawberryArgument]) -> None:
        self._arguments = value

    def resolve_type(self, *, type_definition: Any = None) -> Any:
        """`Connection[Post]` as `PostConnection`, the node type's own (with `aggregate`), once
        the node type can be known (a lazy one, when the schema is built)."""
        resolved = super().resolve_type(type_definition=type_definition)
        typed = getattr(self, "_typed", None)
        if typed is None:
            node_type = _generic_node_type(resolved)
            if node_type is None:
                return resolved
            typed = self._typed = connection_type(node_type)
        return typed


def connection_node_type(connection_field: StrawberryField) -> NodeType:
    """The node type of a `Connection[...]` field."""
    resolved: Any = connection_field.type
    found = getattr(resolved, "__quill_node_type__", None) or _generic_node_type(resolved)
    if found is None:
        raise TypeError(f"{connection_field.python_name}: {resolved} is not a connection of a @node type")
    return found


def _generic_node_type(resolved: Any) -> NodeType | None:
    """The node type of `Connection[X]` (None while a lazy X cannot be imported yet)."""
    definition: StrawberryObjectDefinition | None = getattr(resolved, "__strawberry_definition__", None)
    if definition is None or len(definition.type_var_map) != 1:
        return None
    [node] = definition.type_var_map.values()
    if isinstance(node, LazyType):
        try:
            node = node.resolve_type()
        except (ImportError, AttributeError):  # its module is still being imported
            return None
    return node_type_of(node)  # type: ignore[arg-type]


def argument(
    name: str,
    annotation: Any,
    default: Any = UNSET,
    deprecation_reason: str | None = None,
    description: str | None = None,
) -> StrawberryArgument:
    # Omitted arguments arrive as UNSET: graphql-core and Strawberry then skip them instead of
    # converting six nulls per connection field.
    return StrawberryArgument(
        python_name=name,
        graphql_name=None,
        type_annotation=StrawberryAnnotation(annotation),
        default=default,
        deprecation_reason=deprecation_reason,
        description=description,
    )


# Root lookups.


def lookup(*keys: Key, one_of: str | None = None, description: str | None = None) -> Any:
    """One row of the field's type by exactly one of `keys` (each an argument); null when there
    is none the viewer may see. With one key its argument is required. `one_of` names a @oneOf
    input made of the keys, taken as the argument `by` (`user(by: {username: "ada"})`); the
    flat arguments then stay for old clients, deprecated."""
    if one_of is not None and len(keys) < 2:
        raise ValueError(f"{one_of}: a @oneOf input needs two keys or more")
    spec = LookupSpec(keys, one_of=one_of is not None)

    def resolve(root: Any, info: strawberry.Info, **arguments: Any) -> Any:
        return info.context.loaders.lookup(info, spec, arguments)

    field = StrawberryField(
        base_resolver=StrawberryResolver(resolve), description=description, metadata={SPEC: spec}
    )
    if len(keys) == 1:
        field.arguments = [argument(keys[0].argument, keys[0].type or strawberry.ID)]
        return field
    deprecated = f"Use `{BY}`." if one_of else None
    field.arguments = [
        argument(key.argument, (key.type or strawberry.ID) | None, None, deprecated) for key in keys
    ]
    if one_of is not None:
        field.arguments.insert(0, argument(BY, _one_of_input(one_of, keys) | None, None))
    return field


def _one_of_input(name: str, keys: tuple[Key, ...]) -> Any:
    """A @oneOf input with a field per key: GraphQL itself refuses none or two of them."""
    annotations = {key.argument: (key.type or strawberry.ID) | None for key in keys}
    namespace: dict[str, Any] = {"__annotations__": annotations, **dict.fromkeys(annotations, UNSET)}
    names = " or ".join(f"`{key.argument}`" for key in keys)
    return strawberry.input(
        type(name, (), namespace), name=name, one_of=True, description=f"Exactly one of {names}."
    )


def by_id(argument: str = "id") -> Key:
    return Key(argument)


def by_column(column: str, *, type: Any = str, normalize: Any = None) -> Key:
    return Key(column, column, type, normalize)


def viewer(description: str | None = None) -> Any:
    """The viewer's own row (`me`), or null for an anonymous request."""
    spec = ViewerSpec()

    def resolve(root: Any, info: strawberry.Info) -> Any:
        return info.context.loaders.viewer(info)

    return strawberry.field(resolver=resolve, description=description, metadata={SPEC: spec})


def node_lookup(*, many: bool, description: str | None = None) -> Any:
    """`node(id:)` or `nodes(ids:)`: any declared node type, by global ID."""
    spec = NodeSpec(many)

    def resolve(root: Any, info: strawberry.Info, **arguments: Any) -> Any:
        return (
            info.context.loaders.nodes(info, arguments["ids"])
            if many
            else info.context.loaders.node(info, arguments["id"])
        )

    field = StrawberryField(
        base_resolver=StrawberryResolver(resolve), description=description, metadata={SPEC: spec}
    )
    field.arguments = [argument("ids", list[strawberry.ID])] if many else [argument("id", strawberry.ID)]
    return field


def entity_lookup(any_scalar: Any) -> Any:
    """`_entities(representations: [_Any!]!)` of a federation subgraph (schema/federation.py)."""

    def resolve(root: Any, info: strawberry.Info, representations: list[Any]) -> Any:
        return info.context.loaders.entities(info, representations)

    field = StrawberryField(
        python_name="entities_",
        graphql_name="_entities",
        base_resolver=StrawberryResolver(resolve),
        description="The entities the representations name, as the viewer may see them; null "
        "where there is none (or it is not an entity type).",
        metadata={SPEC: EntitySpec()},
    )
    field.arguments = [argument("representations", list[any_scalar])]
    return field


# Filter input fields.


def _condition(spec: Condition, description: str | None) -> Any:
    return strawberry.field(default=None, description=description, metadata={SPEC: spec})


def equals(column: str, *, id_of: str | None = None, description: str | None = None) -> Any:
    """Rows whose `column` equals the value (with `id_of`, the value is that type's global ID)."""
    return _condition(Condition(column, "equals", id_of=id_of), description)


def contains(column: str, *, description: str | None = "Case-insensitive substring.") -> Any:
    return _condition(Condition(column, "contains"), description)


def after(column: str, *, description: str | None = None) -> Any:
    return _condition(Condition(column, "after"), description)


def before(column: str, *, description: str | None = None) -> Any:
    return _condition(Condition(column, "before"), description)


@strawberry.input(description="How many related rows there are (counting only those the viewer may see).")
class CountFilter:
    at_least: int | None = None
    at_most: int | None = None
    equals: int | None = None


def counted(of: str, link: str, *, description: str | None = None) -> Any:
    """Rows with so many rows of the node type `of` whose `link` column holds their id:
    `post_count: CountFilter | None = counted("Post", "user_id")`."""
    return strawberry.field(default=None, description=description, metadata={SPEC: CountCondition(of, link)})


def starts_with(column: str, *, lower: bool = False, description: str | None = None) -> Any:
    return _condition(Condition(column, "starts_with", lower=lower), description)
