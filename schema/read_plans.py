"""A validated query, with its variables, turned into a read tree for db/json_reads.py.

The walk follows graphql-core's rules for the response's shape (field collection with fragments,
`@skip`/`@include`, aliases, merged selections, key order) and the resolvers' rules for
arguments: the same `order_of`, `window_of`, `pk_of` and filter conversions, so a bad argument
raises the same BadInput, and the caller then lets the resolvers answer with their error. The
visibility rules come from db/visibility.py through the same `Where`s the resolvers' reads use.

What has no SQL form here raises NotCompilable: introspection, `node`/`nodes` (interfaces),
and any field not in FIELDS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values, get_directive_values
from sqlalchemy import ColumnElement, case, literal_column
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from db import notes as note_rows
from db import posts as post_rows
from db import tasks as task_rows
from db import users as user_rows
from db.models import TaskStatus
from db.pagination import Listing
from db.read_trees import (
    Column,
    Computed,
    Constant,
    Cursor,
    Edges,
    Fields,
    GlobalId,
    Named,
    Nested,
    Node,
    NotCompilable,
    Null,
    One,
    Page,
    PageFlag,
    Parent,
    Part,
    TotalCount,
    Value,
)
from db.visibility import Viewer, can_see_note, can_see_task, viewer_params
from db.where import Where, condition
from schema.relay import order_of, pk_of, window_of
from schema.users import DEFAULT_AVATAR, MEDIA_PREFIX


def _avatar_url(image_file: ColumnElement[Any]) -> ColumnElement[Any]:
    """User.avatar_url in SQL: the stored file under the media prefix, else the default picture."""
    return case(
        (
            (image_file.is_not(None)) & (image_file != literal_column("''")),
            literal_column(f"'{MEDIA_PREFIX}'").op("||")(image_file),
        ),
        else_=literal_column(f"'{DEFAULT_AVATAR}'"),
    )


# A nested page's parent type and the column of the page's table that holds the parent's id.
Link = tuple[str, str] | None

STATUS_NAMES = tuple((status.value, status.name) for status in TaskStatus)

# Scalar fields: GraphQL type -> field -> how the row prints it.
SCALARS: dict[str, dict[str, Value]] = {
    "User": {
        "id": GlobalId("User"),
        "username": Column("username"),
        "email": Column("email"),
        "isSuperuser": Column("is_superuser", "bool"),
        "createdAt": Column("created_at", "datetime"),
        "avatarUrl": Computed("avatar_url", ("image_file",), _avatar_url),
    },
    "Post": {
        "id": GlobalId("Post"),
        "title": Column("title"),
        "content": Column("content"),
        "datePosted": Column("date_posted", "datetime"),
    },
    "Task": {
        "id": GlobalId("Task"),
        "title": Column("title"),
        "status": Named("status", STATUS_NAMES),
        "createdAt": Column("created_at", "datetime"),
    },
    "Note": {
        "id": GlobalId("Note"),
        "body": Column("body"),
        "createdAt": Column("created_at", "datetime"),
    },
}


@dataclass(frozen=True, slots=True)
class Rows:
    """A GraphQL object type's rows: the listing, and who may see which (a `Where` per viewer)."""

    listing: Callable[[Viewer], Listing]
    visible: Callable[[Viewer], Where]


ROWS: dict[str, Rows] = {
    # Users are public; the viewer's id is bound for the email column's rule.
    "User": Rows(user_rows.listing, lambda viewer: Where(params=viewer_params(viewer))),
    "Post": Rows(lambda _: post_rows.LISTING, lambda _: Where()),
    "Task": Rows(lambda _: task_rows.LISTING, can_see_task),
    "Note": Rows(lambda _: note_rows.LISTING, can_see_note),
}

# To-one fields: type -> field -> (target type, the column holding the target's id).
TO_ONE: dict[str, dict[str, tuple[str, str]]] = {
    "Post": {"author": ("User", "user_id")},
    "Task": {"owner": ("User", "owner_id")},
    "Note": {"task": ("Task", "task_id")},
}


@dataclass(frozen=True, slots=True)
class Lists:
    """A connection field's rows: the node type, the filter with no conditions, and the
    column linking a row to its parent (None at the root)."""

    node_type: str
    no_filter: Any
    via: Any = None


LISTS: dict[str, dict[str, Lists]] = {
    "Query": {
        "users": Lists("User", user_rows.UserFilter()),
        "posts": Lists("Post", post_rows.PostFilter()),
        "tasks": Lists("Task", task_rows.TaskFilter()),
    },
    "User": {
        "posts": Lists("Post", post_rows.PostFilter(), post_rows.posts.c.user_id),
        "tasks": Lists("Task", task_rows.TaskFilter(), task_rows.tasks.c.owner_id),
    },
    "Task": {"notes": Lists("Note", note_rows.NoteFilter(), note_rows.notes.c.task_id)},
}


def _filter_where(db_filter: Any, viewer: Viewer) -> Where:
    """Each db filter's conditions, with the visibility rule of its rows (PostFilter has none)."""
    where: Callable[..., Where] = db_filter.where
    return where() if isinstance(db_filter, post_rows.PostFilter) else where(viewer)


class ReadPlanner:
    """Turns one operation of a validated document, with its coerced variables, into Fields."""

    def __init__(
        self,
        schema: GraphQLSchema,
        strawberry_config: Any,
        scalar_registry: Mapping[object, Any],
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues,
        viewer: Viewer,
    ) -> None:
        self.schema = schema
        self.config = strawberry_config
        self.scalar_registry = scalar_registry
        self.fragments = fragments
        self.variables = variables
        self.viewer = viewer

    # Field collection, as graphql-core's collect_fields does it.

    def collect(
        self, type_: GraphQLObjectType, selection_sets: list[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for selection_set in selection_sets:
            self._collect(type_, selection_set, fields, visited)
        return fields

    def _collect(
        self,
        type_: GraphQLObjectType,
        selection_set: SelectionSetNode,
        fields: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self._applies(selection.type_condition, type_):
                    self._collect(type_, selection.selection_set, fields, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = self.fragments[name]
                if self._applies(fragment.type_condition, type_):
                    self._collect(type_, fragment.selection_set, fields, visited)

    def _included(self, node: Any) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip and skip["if"] is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include and include["if"] is False)

    def _applies(self, condition_node: Any, type_: GraphQLObjectType) -> bool:
        if condition_node is None:
            return True
        condition_type = self.schema.get_type(condition_node.name.value)
        if condition_type is type_:
            return True
        return condition_type is not None and self.schema.is_sub_type(condition_type, type_)  # type: ignore[arg-type]

    # Objects.

    def root(self, selection_set: SelectionSetNode) -> Fields:
        query = self.schema.query_type
        assert query is not None
        return tuple(
            (key, self._root_field(query, nodes))
            for key, nodes in self.collect(query, [selection_set]).items()
        )

    def _root_field(self, query: GraphQLObjectType, nodes: list[FieldNode]) -> Value:
        name = nodes[0].name.value
        if name == "__typename":
            return Constant(query.name)
        if name.startswith("__"):
            raise NotCompilable("introspection")
        if name in LISTS["Query"]:
            return self._page(query, nodes, LISTS["Query"][name], via=None)
        arguments = self._arguments(query, nodes[0])
        if name == "me":
            if self.viewer.id is None:
                return Null()
            return self._one(
                "User", nodes, condition("pk", self.viewer.id, lambda p: user_rows.users.c.id == p)
            )
        if name == "user":
            by_id, username = arguments.get("id"), arguments.get("username")
            if (by_id is None) == (username is None):
                raise NotCompilable("user needs exactly one of id and username")  # the resolver's error
            if by_id is not None:
                pk = pk_of(by_id, "User", argument="id")
                return self._one("User", nodes, condition("pk", pk, lambda p: user_rows.users.c.id == p))
            return self._one(
                "User",
                nodes,
                condition("username", str(username).lower(), lambda p: user_rows.users.c.username == p),
            )
        if name in ("post", "task"):
            type_name = name.capitalize()
            pk = pk_of(arguments["id"], type_name, argument="id")
            table = ROWS[type_name].listing(self.viewer).id
            return self._one(type_name, nodes, condition("pk", pk, lambda p: table == p))
        raise NotCompilable(f"Query.{name}")

    def _one(self, type_name: str, nodes: list[FieldNode], where: Where, via: str | None = None) -> One:
        rows = ROWS[type_name]
        type_ = self.schema.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType)
        return One(
            listing=rows.listing(self.viewer),
            where=rows.visible(self.viewer) & where,
            fields=self.object_fields(type_, nodes),
            via=via,
        )

    def sub_fields(self, type_: GraphQLObjectType, nodes: list[FieldNode]) -> dict[str, list[FieldNode]]:
        """The fields under `nodes` (one response key's field nodes, merged), by response key."""
        return self.collect(type_, [node.selection_set for node in nodes if node.selection_set is not None])

    def object_fields(self, type_: GraphQLObjectType, nodes: list[FieldNode], link: Link = None) -> Fields:
        """`link`: for the nodes of a nested page, the parent's type and the column that links a
        node to it."""
        return tuple(
            (key, self._field(type_, field_nodes, link))
            for key, field_nodes in self.sub_fields(type_, nodes).items()
        )

    def _field(self, type_: GraphQLObjectType, nodes: list[FieldNode], link: Link) -> Value:
        name = nodes[0].name.value
        if name == "__typename":
            return Constant(type_.name)
        scalar = SCALARS.get(type_.name, {}).get(name)
        if scalar is not None:
            return scalar
        to_one = TO_ONE.get(type_.name, {}).get(name)
        if to_one is not None:
            target, column = to_one
            if to_one == link:  # user.posts' author is that user: read the parent's row
                target_type = self.schema.get_type(target)
                assert isinstance(target_type, GraphQLObjectType)
                return Parent(self.object_fields(target_type, nodes))
            return self._one(target, nodes, Where(), via=column)
        lists = LISTS.get(type_.name, {}).get(name)
        if lists is not None:
            return self._page(type_, nodes, lists, via=lists.via)
        raise NotCompilable(f"{type_.name}.{name}")

    # Connections.

    def _arguments(self, parent: GraphQLObjectType, node: FieldNode) -> dict[str, Any]:
        """The field's arguments as the resolver receives them (Python names, input objects)."""
        definition = parent.fields[node.name.value]
        raw = get_argument_values(definition, node, self.variables)
        field = definition.extensions.get("strawberry-definition")
        if not isinstance(field, StrawberryField):
            raise NotCompilable(f"{parent.name}.{node.name.value} is not a Strawberry field")
        return convert_arguments(
            raw, field.arguments, scalar_registry=self.scalar_registry, config=self.config
        )

    def _page(self, parent: GraphQLObjectType, nodes: list[FieldNode], lists: Lists, via: Any) -> Page:
        arguments = self._arguments(parent, nodes[0])
        rows = ROWS[lists.node_type]
        listing = rows.listing(self.viewer)
        order = order_of(arguments.get("order_by"))
        given_filter = arguments.get("filter")
        db_filter = given_filter.to_db() if given_filter is not None else lists.no_filter
        window = window_of(
            listing,
            order,
            first=arguments.get("first"),
            after=arguments.get("after"),
            last=arguments.get("last"),
            before=arguments.get("before"),
        )
        connection = self._named_type(parent, nodes[0])
        link = (parent.name, via.key) if via is not None else None
        return Page(
            listing=listing,
            where=_filter_where(db_filter, self.viewer),
            order=order,
            window=window,
            parts=self._connection_parts(connection, nodes, lists.node_type, link),
            via=via,
        )

    def _named_type(self, parent: GraphQLObjectType, node: FieldNode) -> GraphQLObjectType:
        named = get_named_type(parent.fields[node.name.value].type)
        assert isinstance(named, GraphQLObjectType)
        return named

    def _connection_parts(
        self, connection: GraphQLObjectType, nodes: list[FieldNode], node_type: str, link: Link
    ) -> tuple[tuple[str, Part], ...]:
        parts: list[tuple[str, Part]] = []
        for key, field_nodes in self.sub_fields(connection, nodes).items():
            name = field_nodes[0].name.value
            if name == "__typename":
                parts.append((key, Constant(connection.name)))
            elif name == "totalCount":
                parts.append((key, TotalCount()))
            elif name == "edges":
                edge = self._named_type(connection, field_nodes[0])
                parts.append((key, Edges(self._edge_parts(edge, field_nodes, node_type, link))))
            elif name == "pageInfo":
                page_info = self._named_type(connection, field_nodes[0])
                parts.append((key, Nested(self._page_info_parts(page_info, field_nodes))))
            else:
                raise NotCompilable(f"{connection.name}.{name}")
        return tuple(parts)

    def _edge_parts(
        self, edge: GraphQLObjectType, nodes: list[FieldNode], node_type: str, link: Link
    ) -> tuple[tuple[str, Part], ...]:
        parts: list[tuple[str, Part]] = []
        for key, field_nodes in self.sub_fields(edge, nodes).items():
            name = field_nodes[0].name.value
            if name == "__typename":
                parts.append((key, Constant(edge.name)))
            elif name == "cursor":
                parts.append((key, Cursor()))
            elif name == "node":
                target = self.schema.get_type(node_type)
                assert isinstance(target, GraphQLObjectType)
                parts.append((key, Node(self.object_fields(target, field_nodes, link))))
            else:
                raise NotCompilable(f"{edge.name}.{name}")
        return tuple(parts)

    def _page_info_parts(
        self, page_info: GraphQLObjectType, nodes: list[FieldNode]
    ) -> tuple[tuple[str, Part], ...]:
        parts: list[tuple[str, Part]] = []
        for key, field_nodes in self.sub_fields(page_info, nodes).items():
            name = field_nodes[0].name.value
            parts.append((key, Constant(page_info.name) if name == "__typename" else PageFlag(name)))
        return tuple(parts)
