"""Declaring a type once (see nodes.py and fields.py): what the noun modules of schema/types use.

@node(models.Post, visible=everyone, sort=("date_posted", "title"), filter=PostFilter)
@strawberry.type(description="A blog post. Public: anyone may read it.")
class Post(Node):
    title: str = column()
    author: Annotated[User, strawberry.lazy("schema.types.users")] = to_one("user_id")
"""

from schema.declare.fields import (
    CountFilter,
    after,
    before,
    by_column,
    by_id,
    column,
    connection,
    contains,
    counted,
    entity_lookup,
    equals,
    expression,
    lookup,
    node_lookup,
    starts_with,
    to_one,
    viewer,
)
from schema.declare.nodes import (
    NodeType,
    declared,
    entity_types,
    find_node_type,
    from_row,
    linked,
    node,
    node_type_named,
    node_types,
)
from schema.declare.specs import resolver_only

__all__ = [
    "CountFilter",
    "NodeType",
    "after",
    "before",
    "by_column",
    "by_id",
    "column",
    "connection",
    "contains",
    "counted",
    "declared",
    "entity_lookup",
    "entity_types",
    "equals",
    "expression",
    "find_node_type",
    "from_row",
    "linked",
    "lookup",
    "node",
    "node_lookup",
    "node_type_named",
    "node_types",
    "resolver_only",
    "starts_with",
    "to_one",
    "viewer",
]
