"""A validated query, with its variables, turned into a read tree for schema/compiled/sql.py.

The walk follows graphql-core's rules for the response's shape (field collection with fragments,
`@skip`/`@include`, aliases, merged selections, key order), and the fields' declarations
(schema/declare/) for what each field reads: a column, a to-one object, a connection, a lookup.
Arguments are decoded as the resolvers decode them (the same NodeType.order_of, `window_of`,
`pk_of`, filter conditions and search), so a bad argument raises the same BadInput, and the
caller then lets the resolvers answer with their error. Visibility comes from the node types'
rules, through the same `Where`s the resolvers' reads use.

A field without a declaration raises NotCompilable (tests/test_coverage.py keeps every field
either declared or listed as answered by the resolvers only).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values, get_directive_values
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from db.visibility import Viewer
from db.where import EVERYTHING, Where, condition
from schema.compiled.tree import (
    Aggregate,
    Array,
    Column,
    Constant,
    Cursor,
    Edges,
    Fields,
    GlobalId,
    Groups,
    Measure,
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
from schema.declare.aggregates import GroupRequest, group_keys, group_request
from schema.declare.nodes import NodeType, find_node_type, node_type_named
from schema.declare.specs import (
    ColumnSpec,
    ConnectionSpec,
    EntitySpec,
    ExpressionSpec,
    LookupSpec,
    NodeSpec,
    ToOneSpec,
    ViewerSpec,
    spec_of,
)
from schema.relay import MAX_PAGE_SIZE, from_global_id, pk_of, window_of

# A nested page's parent type and the column of the page's table that holds the parent's id.
Link = tuple[str, str] | None


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
        definition = query.fields[name]
        spec = spec_of(definition.extensions.get("strawberry-definition"))
        if isinstance(spec, ConnectionSpec):
            return self._page(query, nodes, spec)
        if isinstance(spec, LookupSpec):
            return self._lookup(query, nodes, spec)
        if isinstance(spec, ViewerSpec):
            if self.viewer.id is None:
                return Null()
            return self.by_id(self._node_type(definition), nodes, self.viewer.id)
        if isinstance(spec, NodeSpec):
            return self._nodes(query, nodes, spec)
        if isinstance(spec, EntitySpec):
            return self._entities(query, nodes)
        raise NotCompilable(f"Query.{name}")

    def _lookup(self, query: GraphQLObjectType, nodes: list[FieldNode], spec: LookupSpec) -> Value:
        node_type = self._node_type(query.fields[nodes[0].name.value])
        arguments = self.arguments(query, nodes[0])
        given = spec.given(arguments)
        if len(given) != 1:
            raise NotCompilable("a lookup needs exactly one key")  # the resolver's error
        [(key, value)] = given
        if key.column is None:
            return self.by_id(node_type, nodes, pk_of(str(value), node_type.name, argument=key.argument))
        if key.normalize is not None:
            value = key.normalize(value)
        if isinstance(value, str) and "\x00" in value:
            return Null()  # no row holds a NUL, as the resolver says
        column = node_type.table.c[key.column]
        return self._one(node_type, nodes, condition(key.column, value, lambda p: column == p))

    def by_id(self, node_type: NodeType, nodes: list[FieldNode], pk: int) -> One:
        table_id = node_type.table.c.id
        return self._one(node_type, nodes, condition("pk", pk, lambda p: table_id == p))

    def written(self, node_type: NodeType, nodes: list[FieldNode]) -> One:
        """The row a statement writes, read by the same statement (schema/compiled/sql.py's
        compile_write reads it from the write itself, so it needs no condition on its id)."""
        return self._one(node_type, nodes, EVERYTHING)

    def _nodes(self, query: GraphQLObjectType, nodes: list[FieldNode], spec: NodeSpec) -> Value:
        arguments = self.arguments(query, nodes[0])
        if not spec.many:
            return self._node(nodes, arguments["id"], "id")
        ids = arguments["ids"]
        if len(ids) > MAX_PAGE_SIZE:
            raise NotCompilable("too many ids")  # the resolver's error
        return Array(tuple(self._node(nodes, global_id, "ids") for global_id in ids))

    def _entities(self, query: GraphQLObjectType, nodes: list[FieldNode]) -> Value:
        """Federation's `_entities`, as the loaders read it (schema/execution/loaders.py)."""
        representations = self.arguments(query, nodes[0])["representations"]
        if len(representations) > MAX_PAGE_SIZE:
            raise NotCompilable("too many representations")  # the resolver's error
        named = [EntitySpec.representation(value) for value in representations]
        if any(found is None for found in named):
            raise NotCompilable("a representation without a key")  # the resolver's error
        return Array(tuple(self._entity(nodes, *found) for found in named if found))

    def _entity(self, nodes: list[FieldNode], typename: str, global_id: str) -> Value:
        type_name, pk = from_global_id(global_id, argument="representations")
        node_type = find_node_type(type_name)
        if node_type is None or not node_type.entity or type_name != typename:
            return Null()
        return self.by_id(node_type, nodes, pk)

    def _node(self, nodes: list[FieldNode], global_id: str, argument: str) -> Value:
        type_name, pk = from_global_id(global_id, argument=argument)
        node_type = find_node_type(type_name)
        if node_type is None:
            return Null()
        return self.by_id(node_type, nodes, pk)

    def _one(self, node_type: NodeType, nodes: list[FieldNode], where: Where, via: str | None = None) -> One:
        type_ = self.schema.get_type(node_type.name)
        assert isinstance(type_, GraphQLObjectType)
        return One(
            listing=node_type.listing(self.viewer),
            where=node_type.rows(self.viewer) & where,
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
        node_type = find_node_type(type_.name)
        if node_type is None:
            raise NotCompilable(f"{type_.name} is not a declared node type")
        if name == "id":
            return GlobalId(type_.name)
        spec = node_type.spec(name)
        definition = type_.fields[name]
        if isinstance(spec, ColumnSpec | ExpressionSpec):
            label = node_type.label(node_type.graphql_names[name])
            assert label is not None
            return _printed(label, definition)
        if isinstance(spec, ToOneSpec):
            target = self._node_type(definition)
            if (target.name, spec.link) == link:  # user.posts' author is that user: read the parent's row
                target_type = self.schema.get_type(target.name)
                assert isinstance(target_type, GraphQLObjectType)
                return Parent(self.object_fields(target_type, nodes))
            return self._one(target, nodes, Where(), via=spec.link)
        if isinstance(spec, ConnectionSpec):
            return self._page(type_, nodes, spec)
        raise NotCompilable(f"{type_.name}.{name}")

    def _node_type(self, definition: GraphQLField) -> NodeType:
        named: Any = get_named_type(definition.type)
        if named.name.endswith("Connection"):
            named = get_named_type(get_named_type(named.fields["edges"].type).fields["node"].type)
        node_type = find_node_type(named.name)
        if node_type is None:
            raise NotCompilable(f"{named.name} is not a declared node type")
        return node_type

    # Connections.

    def arguments(self, parent: GraphQLObjectType, node: FieldNode) -> dict[str, Any]:
        """The field's arguments as the resolver receives them (Python names, input objects)."""
        definition = parent.fields[node.name.value]
        raw = get_argument_values(definition, node, self.variables)
        field = definition.extensions.get("strawberry-definition")
        if not isinstance(field, StrawberryField):
            raise NotCompilable(f"{parent.name}.{node.name.value} is not a Strawberry field")
        return convert_arguments(
            raw, field.arguments, scalar_registry=self.scalar_registry, config=self.config
        )

    def _page(self, parent: GraphQLObjectType, nodes: list[FieldNode], spec: ConnectionSpec) -> Page:
        definition = parent.fields[nodes[0].name.value]
        node_type = self._node_type(definition)
        arguments = self.arguments(parent, nodes[0])
        listing = node_type.listing(self.viewer)
        search = arguments.get("search")
        order = node_type.order_of(arguments.get("order_by"), search)
        window = window_of(
            listing,
            order,
            first=arguments.get("first"),
            after=arguments.get("after"),
            last=arguments.get("last"),
            before=arguments.get("before"),
        )
        connection = self._named_type(parent, nodes[0])
        via = node_type.table.c[spec.link] if spec.link is not None else None
        link = (parent.name, spec.link) if spec.link is not None else None
        return Page(
            listing=listing,
            where=node_type.where(self.viewer, arguments.get("filter"), search),
            order=order,
            window=window,
            parts=self._connection_parts(connection, nodes, node_type.name, link),
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
            elif name == "aggregate":
                aggregate = self._named_type(connection, field_nodes[0])
                parts.append((key, self._aggregate(aggregate, field_nodes, node_type)))
            elif name == "edges":
                edge = self._named_type(connection, field_nodes[0])
                parts.append((key, Edges(self._edge_parts(edge, field_nodes, node_type, link))))
            elif name == "pageInfo":
                page_info = self._named_type(connection, field_nodes[0])
                parts.append((key, Nested(self._page_info_parts(page_info, field_nodes))))
            else:
                raise NotCompilable(f"{connection.name}.{name}")
        return tuple(parts)

    def _aggregate(self, aggregate: GraphQLObjectType, nodes: list[FieldNode], node_type: str) -> Aggregate:
        declared = node_type_named(node_type)
        parts: list[tuple[str, Measure | Constant | Aggregate | Groups]] = []
        for key, field_nodes in self.sub_fields(aggregate, nodes).items():
            name = field_nodes[0].name.value
            if name == "__typename":
                parts.append((key, Constant(aggregate.name)))
            elif name == "count":
                parts.append((key, Measure("count")))
            elif name == "groupBy":
                parts.append((key, self._groups(aggregate, field_nodes, declared)))
            else:  # min, max, sum or avg: an object of one value per field
                values = self._named_type(aggregate, field_nodes[0])
                parts.append((key, Aggregate(self._measures(values, field_nodes, declared, name))))
        return Aggregate(tuple(parts))

    def _groups(self, aggregate: GraphQLObjectType, nodes: list[FieldNode], node_type: NodeType) -> Groups:
        arguments = self.arguments(aggregate, nodes[0])
        request = group_request(
            node_type, arguments.get("by"), arguments.get("first"), arguments.get("order_by")
        )
        group = get_named_type(aggregate.fields[nodes[0].name.value].type)
        assert isinstance(group, GraphQLObjectType)
        parts: list[tuple[str, Measure | Constant | Aggregate | Node]] = []
        for key, field_nodes in self.sub_fields(group, nodes).items():
            name = field_nodes[0].name.value
            if name == "__typename":
                parts.append((key, Constant(group.name)))
            elif name == "count":
                parts.append((key, Measure("count")))
            elif name == "key":
                key_type = self._named_type(group, field_nodes[0])
                parts.append((key, Node(self._group_key(key_type, field_nodes, node_type, request))))
            else:
                values = self._named_type(group, field_nodes[0])
                parts.append((key, Aggregate(self._measures(values, field_nodes, node_type, name))))
        return Groups(request, tuple(parts))

    def _group_key(
        self, key_type: GraphQLObjectType, nodes: list[FieldNode], node_type: NodeType, request: GroupRequest
    ) -> Fields:
        """A group's key, read from the group row's columns k0, k1, ... (null where not grouped)."""
        labels = {column: f"k{number}" for number, (column, _) in enumerate(request.keys)}
        keys = {key.graphql_name: key for key in group_keys(node_type)}
        found: list[tuple[str, Value]] = []
        for response_key, field_nodes in self.sub_fields(key_type, nodes).items():
            name = field_nodes[0].name.value
            if name == "__typename":
                found.append((response_key, Constant(key_type.name)))
                continue
            group_key = keys[name]
            label = labels.get(group_key.column)
            if label is None:
                found.append((response_key, Null()))
            elif group_key.kind == "relation":
                target = self._node_type(key_type.fields[name])
                found.append((response_key, self._one(target, field_nodes, Where(), via=label)))
            else:
                found.append((response_key, _printed(label, key_type.fields[name])))
        return tuple(found)

    def _measures(
        self, values: GraphQLObjectType, nodes: list[FieldNode], node_type: NodeType, function: str
    ) -> tuple[tuple[str, Measure | Constant | Aggregate], ...]:
        parts: list[tuple[str, Measure | Constant | Aggregate]] = []
        for key, field_nodes in self.sub_fields(values, nodes).items():
            name = field_nodes[0].name.value
            if name == "__typename":
                parts.append((key, Constant(values.name)))
                continue
            column = node_type.label(node_type.graphql_names[name])
            assert column is not None
            printed = _printed(column, values.fields[name])
            kind = printed.kind if isinstance(printed, Column) and function in ("min", "max") else "plain"
            parts.append((key, Measure(function, column, kind)))
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


def _printed(label: str, definition: GraphQLField) -> Value:
    """How a scalar field prints its column, by its GraphQL type."""
    of_type: Any = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
    if of_type is GraphQLBoolean:
        return Column(label, "bool")
    if of_type.name == "DateTime":
        return Column(label, "datetime")
    if isinstance(of_type, GraphQLEnumType):
        names = tuple((str(_stored(value.value)), name) for name, value in of_type.values.items())
        return Named(label, names)
    return Column(label)


def _stored(value: Any) -> Any:
    """What the database holds for an enum value (a Python enum's value, or the value itself)."""
    return value.value if isinstance(value, Enum) else value
