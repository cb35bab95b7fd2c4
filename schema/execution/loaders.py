"""Per-operation data loaders: each level of a query costs one SQL statement, whatever its width.

The declared fields (schema/declare/fields.py) hand their work here. `users(first: 50) { posts(first:
10) { author } }` resolves 50 `User.posts` fields at once; their loader keys arrive together,
are grouped by page request (siblings share one), and become one statement. The posts' authors
are loaded with the page, through the users' loader, in one `WHERE id IN (...)`: the 500
`Post.author` fields then complete without waiting. Every loader is derived from the node
types' declarations: a new type needs none of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from graphql import get_named_type
from strawberry import UNSET
from strawberry.dataloader import DataLoader

from db import aggregates, pagination
from db.pagination import AnyRow, Order, Page, Window
from db.session import RequestDb
from db.visibility import Viewer
from db.where import Where
from schema.declare.aggregates import GroupRequest, measured_columns
from schema.declare.nodes import NodeType, find_node_type
from schema.declare.specs import ConnectionSpec, EntitySpec, LookupSpec, ToOneSpec
from schema.errors import BadInput
from schema.execution.selection import CONNECTION_NODE, Related, columns_for, related_for, selects
from schema.relay import (
    MAX_PAGE_SIZE,
    Connection,
    Paged,
    build_connection,
    from_global_id,
    pk_of,
    window_of,
)

if TYPE_CHECKING:
    from schema.execution.context import Info


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Everything that decides one page: loader keys sharing it are fetched in one statement."""

    fields: frozenset[str]  # the nodes' listing columns
    where_key: Hashable  # `where`, as a value that can be compared
    order: Order
    window: Window
    related: tuple[Related, ...]
    cursors: bool  # whether edges carry cursors (pageInfo always does)
    where: Where = field(compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class _Count:
    where_key: Hashable
    where: Where = field(compare=False, hash=False)


def where_key(where: Where) -> Hashable:
    return (where.shape, tuple(sorted(where.params.items())))


def _given(value: Any) -> Any:
    return None if value is UNSET else value


class Loaders:
    def __init__(self, db: RequestDb, viewer: Viewer) -> None:
        self._db = db
        self._viewer = viewer
        self._rows: dict[tuple[str, str], DataLoader[Any, Any]] = {}
        self._pages: dict[tuple[str, str], DataLoader[Any, Any]] = {}
        self._counts: dict[tuple[str, str], DataLoader[Any, Any]] = {}
        self._measures: dict[tuple[str, str | None], DataLoader[Any, Any]] = {}
        self._groups: dict[tuple[str, str | None], DataLoader[Any, Any]] = {}
        self._as: dict[Viewer, Loaders] = {}  # for rows read as another viewer (see `linked`)

    # What the declared fields ask for.

    def to_one(self, info: Info, spec: ToOneSpec, root: Any) -> Any:
        name = info._raw_info.field_name
        brought = root.__dict__.get("_with")
        if brought is not None and name in brought:
            return brought[name]
        target = _returned_node_type(info)
        row = root.__dict__["_row"]
        pk = getattr(row, "_mapping", row).get(spec.link)
        if pk is None:
            return None
        seen_by = root.__dict__.get("_seen_by")
        loaders = self if seen_by is None or seen_by == self._viewer else self._seen_by(seen_by)
        return loaders.row(target, "id").load((pk, columns_for(info, target)))

    def _seen_by(self, viewer: Viewer) -> Loaders:
        if viewer not in self._as:
            self._as[viewer] = Loaders(self._db, viewer)
        return self._as[viewer]

    def connection(self, info: Info, spec: ConnectionSpec, root: Any, arguments: dict[str, Any]) -> Any:
        node_type = _returned_node_type(info)
        request = self.page_request(info, node_type, arguments)
        if spec.link is None:
            return self._root_page(node_type, request)
        return self._pages_of(node_type, spec.link).load((root._row.id, request))

    def lookup(self, info: Info, spec: LookupSpec, arguments: dict[str, Any]) -> Any:
        node_type = _returned_node_type(info)
        given = spec.given(arguments)
        if len(given) != 1:
            argument = given[0][0].argument if given else spec.keys[0].argument
            raise BadInput(f"Give exactly one of {spec.argument_names()}.", argument=argument)
        [(key, value)] = given
        columns = columns_for(info, node_type)
        if key.column is None:
            pk = pk_of(str(value), node_type.name, argument=key.argument)
            return self.row(node_type, "id").load((pk, columns))
        if key.normalize is not None:
            value = key.normalize(value)
        if isinstance(value, str) and "\x00" in value:
            return _none()  # no row holds a NUL (writes refuse it), and PostgreSQL cannot compare one
        return self.row(node_type, key.column).load((value, columns))

    def viewer(self, info: Info) -> Any:
        if self._viewer.id is None:
            return None
        node_type = _returned_node_type(info)
        return self.row(node_type, "id").load((self._viewer.id, columns_for(info, node_type)))

    def node(self, info: Info, global_id: str, argument: str = "id") -> Awaitable[Any]:
        type_name, pk = from_global_id(global_id, argument=argument)
        node_type = find_node_type(type_name)
        if node_type is None:  # an ID of a type that has no nodes is as absent as a deleted row
            return _none()
        return self.row(node_type, "id").load((pk, columns_for(info, node_type)))

    async def entities(self, info: Info, representations: list[Any]) -> list[Any]:
        """Federation's `_entities`: each representation's row (schema/federation.py), batched
        per type like `nodes`; null for a type that is not an entity, or an ID of another type."""
        if len(representations) > MAX_PAGE_SIZE:
            raise BadInput(
                f"representations: at most {MAX_PAGE_SIZE} at once, got {len(representations)}.",
                argument="representations",
            )
        named = [EntitySpec.representation(value) for value in representations]
        if any(found is None for found in named):
            raise BadInput(
                "representations: each needs a __typename and an id (a global ID).",
                argument="representations",
            )
        return list(await asyncio.gather(*(self._entity(info, *found) for found in named if found)))

    def _entity(self, info: Info, typename: str, global_id: str) -> Awaitable[Any]:
        type_name, pk = from_global_id(global_id, argument="representations")
        node_type = find_node_type(type_name)
        if node_type is None or not node_type.entity or type_name != typename:
            return _none()
        return self.row(node_type, "id").load((pk, columns_for(info, node_type)))

    async def nodes(self, info: Info, ids: list[str]) -> list[Any]:
        if len(ids) > MAX_PAGE_SIZE:
            raise BadInput(f"ids: at most {MAX_PAGE_SIZE} IDs at once, got {len(ids)}.", argument="ids")
        # Gathered, so the loaders batch each type into one statement.
        return list(await asyncio.gather(*(self.node(info, global_id, "ids") for global_id in ids)))

    def visible(self, node_type: NodeType, pk: int) -> Awaitable[Any]:
        """The row's id-only object if the viewer may see it, else None."""
        return self.row(node_type, "id").load((pk, frozenset()))

    def load(self, info: Info, node_type: NodeType, pk: int, *, path: tuple[str, ...] = ()) -> Awaitable[Any]:
        """One row by id, with the columns the selection at `path` needs (mutations, events)."""
        return self.row(node_type, "id").load((pk, columns_for(info, node_type, path=path)))

    # Page requests.

    def page_request(self, info: Info, node_type: NodeType, arguments: dict[str, Any]) -> PageRequest:
        """What a connection field's arguments and selection ask for, checked and decoded."""
        first, after, last, before = (
            _given(arguments.get(name)) for name in ("first", "after", "last", "before")
        )
        search = _given(arguments.get("search"))
        order = node_type.order_of(_given(arguments.get("order_by")), search)
        where = node_type.where(self._viewer, _given(arguments.get("filter")), search)
        listing = node_type.listing(self._viewer)
        return PageRequest(
            fields=columns_for(info, node_type, path=CONNECTION_NODE),
            where_key=where_key(where),
            order=order,
            window=window_of(listing, order, first=first, after=after, last=last, before=before),
            related=related_for(info, node_type, path=CONNECTION_NODE),
            cursors="cursor" in selects(info, ("edges",)),
            where=where,
        )

    async def _root_page(self, node_type: NodeType, request: PageRequest) -> Connection[Any]:
        listing = node_type.listing(self._viewer)
        async with self._db.use() as session:
            page = await pagination.fetch_page(
                session,
                listing,
                fields=request.fields,
                where=request.where,
                order=request.order,
                window=request.window,
            )
        counted = _Count(request.where_key, request.where)
        connection = self._connection(
            node_type,
            request,
            page,
            partial(self._count_all, node_type, request.where),
            partial(self._aggregates, node_type, None, None, counted),
        )
        await self._bring_along([edge.node for edge in connection.edges], request.related)
        return connection

    def _connection(
        self,
        node_type: NodeType,
        request: PageRequest,
        page: Page[AnyRow],
        count: Callable[[], Awaitable[int]],
        measures: Callable[..., Awaitable[Any]],
    ) -> Connection[Any]:
        paged = Paged(node_type.listing(self._viewer), request.order, request.cursors)
        return build_connection(page, paged, node_type.node, count, measures)

    async def _count_all(self, node_type: NodeType, where: Where) -> int:
        async with self._db.use() as session:
            return await pagination.count(session, node_type.table, where)

    async def _bring_along(self, nodes: Sequence[Any], related: tuple[Related, ...]) -> None:
        """Load the to-one objects a page selects for all its nodes (one statement each), and
        keep them on the nodes, so that their fields complete without waiting."""
        for relation in related:
            keys = [(node._row._mapping.get(relation.link), relation.columns) for node in nodes]
            wanted = [key for key in keys if key[0] is not None]
            found = dict(zip(wanted, await self.row(relation.target, "id").load_many(wanted), strict=True))
            for node, key in zip(nodes, keys, strict=True):
                node.__dict__.setdefault("_with", {})[relation.field] = found.get(key)

    # The loaders, one per node type and key column (rows) or link (pages, counts).

    def row(self, node_type: NodeType, column: str) -> DataLoader[Any, Any]:
        loader = self._rows.get((node_type.name, column))
        if loader is None:
            loader = self._rows[(node_type.name, column)] = DataLoader(
                partial(self._fetch_rows, node_type, column)
            )
        return loader

    def _pages_of(self, node_type: NodeType, link: str) -> DataLoader[Any, Any]:
        loader = self._pages.get((node_type.name, link))
        if loader is None:
            loader = self._pages[(node_type.name, link)] = DataLoader(
                partial(self._fetch_pages, node_type, link)
            )
        return loader

    def _counts_of(self, node_type: NodeType, link: str) -> DataLoader[Any, Any]:
        loader = self._counts.get((node_type.name, link))
        if loader is None:
            loader = self._counts[(node_type.name, link)] = DataLoader(
                partial(self._fetch_counts, node_type, link)
            )
        return loader

    def _aggregates(
        self,
        node_type: NodeType,
        link: str | None,
        parent_id: int | None,
        counted: _Count,
        request: GroupRequest | None = None,
    ) -> Awaitable[Any]:
        """A list's aggregates (a dict), or with a groupBy's `request` its groups (dicts)."""
        if request is None:
            return self._measures_of(node_type, link).load((parent_id, counted))
        return self._groups_of(node_type, link).load((parent_id, (counted, request)))

    def _groups_of(self, node_type: NodeType, link: str | None) -> DataLoader[Any, Any]:
        loader = self._groups.get((node_type.name, link))
        if loader is None:
            loader = self._groups[(node_type.name, link)] = DataLoader(
                partial(self._fetch_groups, node_type, link)
            )
        return loader

    def _measures_of(self, node_type: NodeType, link: str | None) -> DataLoader[Any, Any]:
        """A list's aggregates (all the type offers, in one statement per list request)."""
        loader = self._measures.get((node_type.name, link))
        if loader is None:
            loader = self._measures[(node_type.name, link)] = DataLoader(
                partial(self._fetch_measures, node_type, link)
            )
        return loader

    # Batches: keys that ask the same thing of different parents share one statement.

    async def _fetch_rows(
        self, node_type: NodeType, column: str, keys: Sequence[tuple[Any, frozenset[str]]]
    ) -> list[Any]:
        groups: dict[frozenset[str], list[Any]] = {}
        for value, fields in keys:
            groups.setdefault(fields, []).append(value)
        found: dict[tuple[Any, frozenset[str]], Any] = {}
        listing = node_type.listing(self._viewer)
        for fields, values in groups.items():
            async with self._db.use() as session:
                rows = await pagination.fetch_by(
                    session,
                    listing,
                    key=node_type.table.c[column],
                    values=values,
                    fields=fields,
                    where=node_type.rows(self._viewer),
                )
            found.update({(value, fields): node_type.node(row) for value, row in rows.items()})
        return [found.get(key) for key in keys]

    async def _fetch_pages(
        self, node_type: NodeType, link: str, keys: Sequence[tuple[int, PageRequest]]
    ) -> list[Connection[Any]]:
        groups: dict[PageRequest, list[int]] = {}
        for parent_id, request in keys:
            groups.setdefault(request, []).append(parent_id)
        found: dict[tuple[int, PageRequest], Connection[Any]] = {}
        listing = node_type.listing(self._viewer)
        for request, parent_ids in groups.items():
            async with self._db.use() as session:
                pages = await pagination.fetch_pages(
                    session,
                    listing,
                    parent=node_type.table.c[link],
                    parent_ids=parent_ids,
                    fields=request.fields,
                    where=request.where,
                    order=request.order,
                    window=request.window,
                )
            counted = _Count(request.where_key, request.where)
            connections = {
                (parent_id, request): self._connection(
                    node_type,
                    request,
                    page,
                    partial(self._counts_of(node_type, link).load, (parent_id, counted)),
                    partial(self._aggregates, node_type, link, parent_id, counted),
                )
                for parent_id, page in pages.items()
            }
            await self._bring_along([e.node for c in connections.values() for e in c.edges], request.related)
            found.update(connections)
        return [found[key] for key in keys]

    async def _fetch_counts(
        self, node_type: NodeType, link: str, keys: Sequence[tuple[int, _Count]]
    ) -> list[int]:
        groups: dict[_Count, list[int]] = {}
        for parent_id, counted in keys:
            groups.setdefault(counted, []).append(parent_id)
        found: dict[tuple[int, _Count], int] = {}
        for counted, parent_ids in groups.items():
            async with self._db.use() as session:
                counts = await pagination.count_per_parent(
                    session, parent=node_type.table.c[link], parent_ids=parent_ids, where=counted.where
                )
            found.update({(parent_id, counted): count for parent_id, count in counts.items()})
        return [found.get(key, 0) for key in keys]

    async def _fetch_measures(
        self, node_type: NodeType, link: str | None, keys: Sequence[tuple[int | None, _Count]]
    ) -> list[dict[str, Any]]:
        groups: dict[_Count, list[int]] = {}
        for parent_id, counted in keys:
            groups.setdefault(counted, []).append(parent_id)  # type: ignore[arg-type]
        found: dict[tuple[int | None, _Count], dict[str, Any]] = {}
        columns = measured_columns(node_type)
        parent = node_type.table.c[link] if link is not None else None
        for counted, parent_ids in groups.items():
            async with self._db.use() as session:
                measures = await aggregates.fetch_measures(
                    session, node_type.table, columns, counted.where, parent, parent_ids
                )
            found.update({(parent_id, counted): values for parent_id, values in measures.items()})
        return [found[key] for key in keys]

    async def _fetch_groups(
        self,
        node_type: NodeType,
        link: str | None,
        keys: Sequence[tuple[int | None, tuple[_Count, GroupRequest]]],
    ) -> list[list[dict[str, Any]]]:
        batches: dict[tuple[_Count, GroupRequest], list[int]] = {}
        for parent_id, asked in keys:
            batches.setdefault(asked, []).append(parent_id)  # type: ignore[arg-type]
        found: dict[tuple[int | None, tuple[_Count, GroupRequest]], list[dict[str, Any]]] = {}
        measures = measured_columns(node_type)
        parent = node_type.table.c[link] if link is not None else None
        for (counted, request), parent_ids in batches.items():
            columns = aggregates.group_keys(request.keys, node_type.table.c.__getitem__)
            order = aggregates.group_order(columns, request.by_count, request.descending)
            async with self._db.use() as session:
                groups = await aggregates.fetch_groups(
                    session,
                    node_type.table,
                    columns,
                    measures,
                    counted.where,
                    order,
                    request.first,
                    parent,
                    parent_ids,
                )
            found.update({(parent_id, (counted, request)): rows for parent_id, rows in groups.items()})
        return [found[key] for key in keys]


def _returned_node_type(info: Info) -> NodeType:
    named: Any = get_named_type(info._raw_info.return_type)
    if named.name.endswith("Connection"):
        named = get_named_type(get_named_type(named.fields["edges"].type).fields["node"].type)
    node_type = find_node_type(named.name)
    if node_type is None:
        raise TypeError(
            f"{info._raw_info.parent_type.name}.{info._raw_info.field_name}: {named.name} is not declared"
        )
    return node_type


async def _none() -> None:
    return None
