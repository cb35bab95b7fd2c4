"""Queries drawn from the built schema, for the differential test (tests/test_compiled_reads.py).

Nothing here names a type or a field: what a type's objects hold, which lists they have, how
those order and filter, and which lookups the root offers are read from the GraphQL schema and
from the declarations behind it (schema/declare/), so a new type or field is drawn, and compared
on both read paths, as soon as it is declared. The values drawn (IDs, filter text, instants) come
from the test's database, read through the same declarations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.search import SEARCHED_COLUMNS, words
from schema.declare.nodes import RELEVANCE, find_node_type, node_type_named
from schema.declare.specs import Condition, LookupSpec, spec_of
from schema.relay import to_global_id


def _aggregates(connection: GraphQLObjectType) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if "aggregate" not in connection.fields:
        return ()
    aggregate = _unwrap(connection.fields["aggregate"].type)
    found = []
    for name, aggregate_field in aggregate.fields.items():
        if name == "groupBy":
            continue  # drawn with its arguments (_group_by)
        values = _unwrap(aggregate_field.type)
        found.append((name, tuple(values.fields) if isinstance(values, GraphQLObjectType) else ()))
    return tuple(found)


def _group_by(connection: GraphQLObjectType) -> dict[str, Any]:
    if "aggregate" not in connection.fields:
        return {}
    aggregate = _unwrap(connection.fields["aggregate"].type)
    if "groupBy" not in aggregate.fields:
        return {}
    group_by = aggregate.fields["groupBy"]
    by: GraphQLInputObjectType = _unwrap(group_by.args["by"].type)
    keys = []
    for name, input_field in by.fields.items():
        kind = _unwrap(input_field.type)
        keys.append((name, tuple(kind.values) if isinstance(kind, GraphQLEnumType) else ("true",)))
    key = _unwrap(_unwrap(group_by.type).fields["key"].type)
    fields = tuple((name, isinstance(_unwrap(f.type), GraphQLObjectType)) for name, f in key.fields.items())
    return {"group_by": tuple(keys), "group_key": fields}


def _unwrap(type_: Any) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


@dataclass(frozen=True)
class FilterField:
    name: str
    kind: str  # "id", "text", "instant", "enum", "boolean", "count"
    condition: Condition | None
    choices: tuple[str, ...] = ()  # an enum's values, a count filter's bounds


@dataclass(frozen=True)
class ListField:
    name: str
    target: str
    orders: tuple[str, ...]
    filters: tuple[FilterField, ...]
    searchable: bool = False
    # The connection's `aggregate` object: (field, its values' fields) for min/max/sum/avg;
    # `count` has none.
    aggregates: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Its groupBy: the keys of its `by` input with the values each takes, and the group key's
    # fields (those that are objects take `{ id }`).
    group_by: tuple[tuple[str, tuple[str, ...]], ...] = ()
    group_key: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class Lookup:
    """A root field that returns one object (or a list of nodes) by its arguments."""

    name: str
    target: str | None  # None: the Node interface
    arguments: tuple[tuple[str, str | None], ...]  # (argument, the column it matches; None: an ID)
    many: bool = False
    one_of: bool = False  # the keys can also be given as `by: {key: value}` (a @oneOf input)


@dataclass
class SchemaShape:
    node_types: list[str] = field(default_factory=list)
    leaves: dict[str, list[str]] = field(default_factory=dict)
    to_one: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    lists: dict[str, list[ListField]] = field(default_factory=dict)
    lookups: list[Lookup] = field(default_factory=list)

    @classmethod
    def of(cls, schema: GraphQLSchema) -> SchemaShape:
        shape = cls()
        node = schema.type_map["Node"]
        for name, type_ in sorted(schema.type_map.items()):
            if isinstance(type_, GraphQLObjectType) and node in type_.interfaces:
                shape.node_types.append(name)
        assert schema.query_type is not None
        for name in [*shape.node_types, schema.query_type.name]:
            shape._read_fields(schema, name)
        return shape

    def _read_fields(self, schema: GraphQLSchema, type_name: str) -> None:
        type_ = schema.type_map[type_name]
        assert isinstance(type_, GraphQLObjectType)
        at_root = type_ is schema.query_type
        leaves, to_one, lists = ["__typename"], [], []
        for name, graphql_field in type_.fields.items():
            target = _unwrap(graphql_field.type)
            required = [a for a, arg in graphql_field.args.items() if isinstance(arg.type, GraphQLNonNull)]
            if isinstance(target, GraphQLScalarType | GraphQLEnumType):
                if not required:
                    leaves.append(name)
            elif isinstance(target, GraphQLObjectType) and "edges" in target.fields:
                lists.append(self._list_field(schema, name, graphql_field, target))
            elif at_root:
                self._read_lookup(name, graphql_field, target)
            elif target.name in self.node_types and not graphql_field.args:
                to_one.append((name, target.name))
        if not at_root:
            self.leaves[type_name] = leaves
            self.to_one[type_name] = to_one
        self.lists[type_name] = lists

    def _list_field(self, schema: GraphQLSchema, name: str, graphql_field: Any, connection: Any) -> ListField:
        target = _unwrap(_unwrap(connection.fields["edges"].type).fields["node"].type).name
        orders: tuple[str, ...] = ()
        if "orderBy" in graphql_field.args:
            order_input = _unwrap(graphql_field.args["orderBy"].type)
            orders = tuple(_unwrap(order_input.fields["field"].type).values)
        filters: list[FilterField] = []
        if "filter" in graphql_field.args:
            filter_input: GraphQLInputObjectType = _unwrap(graphql_field.args["filter"].type)
            for filter_name, input_field in filter_input.fields.items():
                filters.append(_filter_field(filter_name, input_field))
        return ListField(
            name,
            target,
            orders,
            tuple(filters),
            searchable="search" in graphql_field.args,
            aggregates=_aggregates(connection),
            **_group_by(connection),
        )

    def _read_lookup(self, name: str, graphql_field: Any, target: Any) -> None:
        spec = spec_of(graphql_field.extensions.get("strawberry-definition"))
        many = isinstance(_strip_non_null(graphql_field.type), GraphQLList)
        if isinstance(target, GraphQLInterfaceType):  # node(id:), nodes(ids:)
            [argument] = graphql_field.args
            self.lookups.append(Lookup(name, None, ((argument, None),), many=many))
        elif isinstance(spec, LookupSpec):
            keys = tuple((key.argument, key.column) for key in spec.keys)
            self.lookups.append(Lookup(name, target.name, keys, one_of=spec.one_of))
        elif not graphql_field.args:  # the viewer's own row
            self.lookups.append(Lookup(name, target.name, ()))


def _strip_non_null(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _filter_field(name: str, input_field: Any) -> FilterField:
    condition = spec_of(input_field.extensions.get("strawberry-definition"))
    condition = condition if isinstance(condition, Condition) else None
    type_ = _unwrap(input_field.type)
    if isinstance(type_, GraphQLEnumType):
        return FilterField(name, "enum", condition, tuple(type_.values))
    if isinstance(type_, GraphQLInputObjectType):  # a CountFilter: bounds on a related count
        return FilterField(name, "count", None, tuple(type_.fields))
    kind = {"ID": "id", "String": "text", "DateTime": "instant", "Boolean": "boolean"}[type_.name]
    return FilterField(name, kind, condition, ())


@dataclass
class Pools:
    """Values from the test's database to draw arguments from: every node type's global IDs
    (with one that matches nothing), and every column a filter or lookup reads."""

    ids: dict[str, list[str]]
    columns: dict[tuple[str, str], list[Any]]
    words: dict[str, list[str]]  # by node type: the words its searched text holds

    @classmethod
    async def read(cls, session: AsyncSession, shape: SchemaShape) -> Pools:
        ids: dict[str, list[str]] = {}
        columns: dict[tuple[str, str], list[Any]] = {}
        for name in shape.node_types:
            table = node_type_named(name).table
            pks = sorted((await session.execute(select(table.c.id))).scalars())
            ids[name] = [str(to_global_id(name, pk)) for pk in pks] + [str(to_global_id(name, 987654))]
        wanted = {
            (list_field.target, filter_field.condition.column)
            for lists in shape.lists.values()
            for list_field in lists
            for filter_field in list_field.filters
            if filter_field.condition is not None
        } | {
            (lookup.target, column)
            for lookup in shape.lookups
            if lookup.target is not None
            for _, column in lookup.arguments
            if column is not None
        }
        for type_name, column in sorted(wanted):
            node_type = find_node_type(type_name)
            assert node_type is not None, type_name
            values = (await session.execute(select(node_type.table.c[column]).distinct())).scalars()
            columns[(type_name, column)] = sorted(values, key=str)
        found: dict[str, list[str]] = {}
        for name in shape.node_types:
            table = node_type_named(name).table
            searched = SEARCHED_COLUMNS.get(table.name, ())
            if searched:
                rows = await session.execute(select(*(table.c[column] for column in searched)))
                found[name] = sorted({word for row in rows for text in row for word in words(text)})
        return cls(ids, columns, found)


class Draw:
    """Hypothesis strategies over one schema shape and one database's values."""

    def __init__(self, shape: SchemaShape, pools: Pools) -> None:
        self.shape, self.pools = shape, pools

    def queries(self) -> st.SearchStrategy[str]:
        root = self.shape.lists["Query"]

        @st.composite
        def query(draw: st.DrawFn) -> str:
            lists = draw(st.lists(st.sampled_from(root), max_size=2, unique_by=lambda f: f.name))
            parts = [draw(self.connection(list_field, 2)) for list_field in lists]
            some = st.sampled_from(self.shape.lookups)
            lookups = draw(st.lists(some, min_size=0 if parts else 1, max_size=2, unique_by=lambda f: f.name))
            parts += [draw(self.lookup(lookup, 1)) for lookup in lookups]
            return "{ " + " ".join(parts) + " }"

        return query()

    def selection(self, type_name: str, depth: int) -> st.SearchStrategy[str]:
        @st.composite
        def selection(draw: st.DrawFn) -> str:
            leaves = self.shape.leaves[type_name]
            chosen = draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=4, unique=True))
            # An alias names its field: fragments on other types may not alias another field alike.
            parts = [f"a_{name}: {name}" if draw(st.booleans()) else name for name in chosen]
            if depth > 0:
                for name, target in self.shape.to_one[type_name]:
                    if draw(st.booleans()):
                        parts.append(f"{name} {{ {draw(self.selection(target, depth - 1))} }}")
                for list_field in self.shape.lists[type_name]:
                    if draw(st.integers(0, 2)) == 0:
                        parts.append(draw(self.connection(list_field, depth - 1)))
            return " ".join(parts)

        return selection()

    def connection(self, list_field: ListField, depth: int) -> st.SearchStrategy[str]:
        @st.composite
        def connection(draw: st.DrawFn) -> str:
            direction = draw(st.sampled_from(["first", "last"]))
            arguments = [f"{direction}: {draw(st.integers(0, 4))}"]
            search = draw(self.search(list_field.target)) if list_field.searchable else None
            if search is not None:
                arguments.append(f"search: {_quoted(search)}")
            orders = [o for o in list_field.orders if o != RELEVANCE or search is not None]
            wants_order: bool = draw(st.booleans())
            if orders and wants_order:
                order = draw(st.sampled_from(orders))
                arguments.append(
                    f"orderBy: {{field: {order}, direction: {draw(st.sampled_from(['ASC', 'DESC']))}}}"
                )
            conditions = (
                draw(st.lists(st.sampled_from(list_field.filters), max_size=2, unique=True))
                if list_field.filters
                else []
            )
            if conditions:
                values = ", ".join(
                    f"{f.name}: {draw(self.filter_value(list_field.target, f))}" for f in conditions
                )
                arguments.append(f"filter: {{{values}}}")
            pieces = []
            if draw(st.booleans()):
                pieces.append("totalCount")
            wants_aggregate: bool = draw(st.booleans())
            if list_field.aggregates and wants_aggregate:
                pieces.append(draw(self.aggregate(list_field)))
            if draw(st.booleans()):
                pieces.append("pageInfo { hasNextPage hasPreviousPage startCursor endCursor }")
            edge = ["cursor"] if draw(st.booleans()) else []
            edge.append(f"node {{ {draw(self.selection(list_field.target, depth))} }}")
            pieces.append(f"edges {{ {' '.join(edge)} }}")
            return f"{list_field.name}({', '.join(arguments)}) {{ {' '.join(pieces)} }}"

        return connection()

    def aggregate(self, list_field: ListField) -> st.SearchStrategy[str]:
        """`aggregate { ... }` with some of its fields, and some values of each."""

        @st.composite
        def aggregate(draw: st.DrawFn) -> str:
            chosen = draw(st.lists(st.sampled_from(list_field.aggregates), min_size=1, unique=True))
            pieces = []
            for name, values in chosen:
                if not values:
                    pieces.append(name)
                    continue
                picked = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))
                pieces.append(f"{name} {{ {' '.join(picked)} }}")
            wants_groups: bool = draw(st.booleans())
            if list_field.group_by and wants_groups:
                pieces.append(draw(self.group_by(list_field)))
            return f"aggregate {{ {' '.join(pieces)} }}"

        return aggregate()

    def group_by(self, list_field: ListField) -> st.SearchStrategy[str]:
        """`groupBy(by: {...}, first: n, orderBy: ...) { key { ... } count ... }`."""

        @st.composite
        def group_by(draw: st.DrawFn) -> str:
            keys = draw(st.lists(st.sampled_from(list_field.group_by), min_size=1, max_size=2, unique=True))
            by = ", ".join(f"{name}: {draw(st.sampled_from(values))}" for name, values in keys)
            arguments = [f"by: {{{by}}}", f"first: {draw(st.integers(0, 4))}"]
            wants_order: bool = draw(st.booleans())
            if wants_order:
                field = draw(st.sampled_from(["COUNT", "KEY"]))
                arguments.append(
                    f"orderBy: {{field: {field}, direction: {draw(st.sampled_from(['ASC', 'DESC']))}}}"
                )
            shown = draw(st.lists(st.sampled_from(list_field.group_key), min_size=1, unique=True))
            key = " ".join(f"{name} {{ id }}" if is_object else name for name, is_object in shown)
            pieces = [f"key {{ {key} }}", "count"]
            measures = [(name, values) for name, values in list_field.aggregates if values]
            wants_measures: bool = draw(st.booleans())
            if measures and wants_measures:
                name, values = draw(st.sampled_from(measures))
                pieces.append(f"{name} {{ {' '.join(values)} }}")
            return f"groupBy({', '.join(arguments)}) {{ {' '.join(pieces)} }}"

        return group_by()

    def search(self, type_name: str) -> st.SearchStrategy[str | None]:
        """No search, or one to three words of the type's text (in any case), or one it lacks."""
        pool = self.pools.words.get(type_name) or ["nothing"]
        some = st.lists(st.sampled_from(pool), min_size=1, max_size=3).map(" ".join)
        return st.one_of(st.none(), some, some.map(str.upper), st.just("zyzzyva"))

    def lookup(self, lookup: Lookup, depth: int) -> st.SearchStrategy[str]:
        @st.composite
        def found(draw: st.DrawFn) -> str:
            arguments = ""
            if lookup.arguments:
                argument, column = draw(st.sampled_from(lookup.arguments))
                given = f"{argument}: {self.key_value(lookup, column, draw)}"
                arguments = f"(by: {{{given}}})" if lookup.one_of and draw(st.booleans()) else f"({given})"
            if lookup.target is not None:
                return f"{lookup.name}{arguments} {{ {draw(self.selection(lookup.target, depth))} }}"
            fragments = [
                f"... on {name} {{ {draw(self.selection(name, 0))} }}"
                for name in draw(
                    st.lists(st.sampled_from(self.shape.node_types), min_size=1, max_size=3, unique=True)
                )
            ]
            return f"{lookup.name}{arguments} {{ id __typename {' '.join(fragments)} }}"

        return found()

    def key_value(self, lookup: Lookup, column: str | None, draw: st.DrawFn) -> str:
        if column is not None:
            assert lookup.target is not None
            values = self.pools.columns[(lookup.target, column)] + ["no such value"]
            return _quoted(draw(st.sampled_from(values)))
        types = [lookup.target] if lookup.target else self.shape.node_types
        pick = st.sampled_from(types).flatmap(lambda name: st.sampled_from(self.pools.ids[name]))
        if lookup.many:
            return "[" + ", ".join(_quoted(i) for i in draw(st.lists(pick, min_size=0, max_size=4))) + "]"
        return _quoted(draw(pick))

    def filter_value(self, type_name: str, filter_field: FilterField) -> st.SearchStrategy[str]:
        condition = filter_field.condition
        kind = filter_field.kind
        if kind == "enum":
            return st.sampled_from(filter_field.choices)
        if kind == "boolean":
            return st.sampled_from(["true", "false"])
        if kind == "count":
            bounds = st.lists(st.sampled_from(filter_field.choices), min_size=1, max_size=2, unique=True)
            return st.tuples(bounds, st.integers(0, 3)).map(
                lambda drawn: "{" + ", ".join(f"{bound}: {drawn[1]}" for bound in drawn[0]) + "}"
            )
        if kind == "id":
            target = condition.id_of if condition and condition.id_of else type_name
            return st.sampled_from(self.pools.ids[target]).map(_quoted)
        assert condition is not None, filter_field
        values = self.pools.columns[(type_name, condition.column)]
        if kind == "instant":
            shifts = st.sampled_from([timedelta(0), timedelta(seconds=-1), timedelta(microseconds=1)])
            return st.tuples(st.sampled_from(values), shifts).map(
                lambda pair: _quoted(_instant(pair[0] + pair[1]))
            )
        # Text: part of a real value, in another case, or a LIKE wildcard taken literally.
        return st.one_of(
            st.sampled_from(values).flatmap(_part_of),
            st.sampled_from(["%", "_", "\\\\", ""]),
        ).map(_quoted)


def _part_of(text: str) -> st.SearchStrategy[str]:
    @st.composite
    def part(draw: st.DrawFn) -> str:
        start = draw(st.integers(0, max(len(text) - 1, 0)))
        piece = text[start : start + draw(st.integers(1, 6))]
        return piece.upper() if draw(st.booleans()) else piece

    return part()


def _instant(moment: datetime) -> str:
    return moment.isoformat()


def _quoted(value: Any) -> str:
    text = str(value)
    return (
        '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n") + '"'
    )
