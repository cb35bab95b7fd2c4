"""Per-operation data loaders: each level of a query costs one SQL statement, whatever its width.

`users(first: 50) { posts(first: 10) { author } }` resolves 50 `User.posts` fields at once;
their loader keys arrive together, are grouped by page request (siblings share one), and
become one statement. The posts' authors are loaded with the page, through the user loader, in
one `WHERE id IN (...)`: the 500 `Post.author` fields then complete without waiting.
Loaders hand back GraphQL objects and whole connections, built from the rows they fetched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from db import notes as note_rows
from db import posts as post_rows
from db import tasks as task_rows
from db import users as user_rows
from db.pagination import AnyRow, Listing, Page
from db.session import RequestDb
from db.visibility import Viewer
from schema.context import Info
from schema.notes import Note
from schema.posts import Post
from schema.relay import Connection, PageRequest, build_connection
from schema.selection import NOTE, POST, TASK, USER, Related, columns_for
from schema.tasks import Task
from schema.users import User

V = TypeVar("V")
Raw = TypeVar("Raw")
NodeT = TypeVar("NodeT", User, Post, Task, Note)

Key = tuple[Any, Any]  # (a parent's or a row's key, what is asked of it)
CountLoader = DataLoader[Key, int]

# A to-one relation a page loads along: the node attribute holding the key, the one to fill.
RELATION_ATTRIBUTES = {
    "author": ("author_pk", "author_object"),
    "owner": ("owner_pk", "owner_object"),
    "task": ("task_pk", "task_object"),
}


class Loaders:
    def __init__(self, db: RequestDb, viewer: Viewer) -> None:
        self._db = db
        self._viewer = viewer
        # Rows by key; the key's second half is the set of columns the query selects.
        self._user = DataLoader(partial(self._batch, self._fetch_users, User.from_row))
        self._user_by_username = DataLoader(partial(self._batch, self._fetch_users_by_name, User.from_row))
        self._post = DataLoader(partial(self._batch, self._fetch_posts, Post.from_row))
        self._task = DataLoader(partial(self._batch, self._fetch_tasks, Task.from_row))
        self._note = DataLoader(partial(self._batch, self._fetch_notes, Note.from_row))
        # Pages and counts by (parent id, page request or filter).
        self.posts_of_author = DataLoader(partial(self._batch_pages, self._fetch_post_pages, self._post_page))
        self.post_count_of_author: CountLoader = DataLoader(partial(self._batch_counts, self._count_posts))
        self.tasks_of_owner = DataLoader(partial(self._batch_pages, self._fetch_task_pages, self._task_page))
        self.task_count_of_owner: CountLoader = DataLoader(partial(self._batch_counts, self._count_tasks))
        self.notes_of_task = DataLoader(partial(self._batch_pages, self._fetch_note_pages, self._note_page))
        self.note_count_of_task: CountLoader = DataLoader(partial(self._batch_counts, self._count_notes))
        self._related_loaders: dict[str, DataLoader[Key, Any]] = {
            "author": self._user,
            "owner": self._user,
            "task": self._task,
        }

    # Single objects, with the columns the selection under `info` needs.

    def user(self, info: Info, pk: int) -> Awaitable[User | None]:
        return self._user.load((pk, columns_for(info, USER)))

    def user_by_username(self, info: Info, username: str) -> Awaitable[User | None]:
        return self._user_by_username.load((username, columns_for(info, USER)))

    def post(self, info: Info, pk: int, *, path: tuple[str, ...] = ()) -> Awaitable[Post | None]:
        return self._post.load((pk, columns_for(info, POST, path=path)))

    def task(self, info: Info, pk: int, *, path: tuple[str, ...] = ()) -> Awaitable[Task | None]:
        return self._task.load((pk, columns_for(info, TASK, path=path)))

    def note(self, info: Info, pk: int, *, path: tuple[str, ...] = ()) -> Awaitable[Note | None]:
        return self._note.load((pk, columns_for(info, NOTE, path=path)))

    # Root lists: one page, not batched (there is one of each per field).

    async def users_page(self, request: PageRequest) -> Connection[User]:
        async with self._db.use() as session:
            page = await user_rows.page(
                session,
                self._viewer,
                fields=request.fields,
                filter=request.filter,
                order=request.order,
                window=request.window,
            )
        listing = user_rows.listing(self._viewer)
        return await self._connection(
            page, listing, request, User.from_row, partial(self._count_all_users, request)
        )

    async def posts_page(self, request: PageRequest) -> Connection[Post]:
        async with self._db.use() as session:
            page = await post_rows.page(
                session,
                fields=request.fields,
                filter=request.filter,
                order=request.order,
                window=request.window,
            )
        count = partial(self._count_all_posts, request)
        return await self._connection(page, post_rows.LISTING, request, Post.from_row, count)

    async def tasks_page(self, request: PageRequest) -> Connection[Task]:
        async with self._db.use() as session:
            page = await task_rows.page(
                session,
                self._viewer,
                fields=request.fields,
                filter=request.filter,
                order=request.order,
                window=request.window,
            )
        count = partial(self._count_all_tasks, request)
        return await self._connection(page, task_rows.LISTING, request, Task.from_row, count)

    async def _connection(
        self,
        page: Page[AnyRow],
        listing: Listing,
        request: PageRequest,
        to_node: Callable[[AnyRow], NodeT],
        count_rows: Callable[[], Awaitable[int]],
    ) -> Connection[NodeT]:
        connection = build_connection(page, listing, request, to_node, count_rows)
        await self._bring_along([edge.node for edge in connection.edges], request.related)
        return connection

    async def _count_all_users(self, request: PageRequest) -> int:
        async with self._db.use() as session:
            return await user_rows.count(session, request.filter)

    async def _count_all_posts(self, request: PageRequest) -> int:
        async with self._db.use() as session:
            return await post_rows.count(session, request.filter)

    async def _count_all_tasks(self, request: PageRequest) -> int:
        async with self._db.use() as session:
            return await task_rows.count(session, self._viewer, request.filter)

    async def _bring_along(self, nodes: Sequence[Any], related: Related) -> None:
        """Load the to-one relations a page selects for all its nodes (one statement each), and
        set them on the nodes, so that their resolvers return them without waiting."""
        for name, fields in related:
            key_attribute, object_attribute = RELATION_ATTRIBUTES[name]
            keys = [(getattr(node, key_attribute), fields) for node in nodes]
            for node, found in zip(nodes, await self._related_loaders[name].load_many(keys), strict=True):
                setattr(node, object_attribute, found)

    # Batching: keys that ask the same thing of different parents share one statement.

    async def _batch(
        self,
        fetch: Callable[[AsyncSession, list[Any], Any], Awaitable[dict[Any, Raw]]],
        convert: Callable[[Raw], V],
        keys: Sequence[Key],
    ) -> list[V | None]:
        groups: dict[Any, list[Any]] = {}
        for key, asked in keys:
            groups.setdefault(asked, []).append(key)
        found: dict[Key, V] = {}
        for asked, group in groups.items():
            async with self._db.use() as session:
                raw = await fetch(session, group, asked)
            found.update({(key, asked): convert(value) for key, value in raw.items()})
        return [found.get(key) for key in keys]

    async def _batch_counts(
        self, fetch: Callable[[AsyncSession, list[Any], Any], Awaitable[dict[Any, int]]], keys: Sequence[Key]
    ) -> list[int]:
        return [count or 0 for count in await self._batch(fetch, _same, keys)]

    async def _batch_pages(
        self,
        fetch: Callable[[AsyncSession, list[int], PageRequest], Awaitable[dict[int, Page[AnyRow]]]],
        build: Callable[[int, PageRequest, Page[AnyRow]], Connection[Any]],
        keys: Sequence[tuple[int, PageRequest]],
    ) -> list[Connection[Any]]:
        groups: dict[PageRequest, list[int]] = {}
        for parent_id, request in keys:
            groups.setdefault(request, []).append(parent_id)
        found: dict[tuple[int, PageRequest], Connection[Any]] = {}
        for request, parent_ids in groups.items():
            async with self._db.use() as session:
                pages = await fetch(session, parent_ids, request)
            connections = {(pid, request): build(pid, request, page) for pid, page in pages.items()}
            nodes = [edge.node for connection in connections.values() for edge in connection.edges]
            await self._bring_along(nodes, request.related)
            found.update(connections)
        return [found[key] for key in keys]

    # What each loader fetches.

    async def _fetch_users(
        self, session: AsyncSession, ids: list[int], fields: frozenset[str]
    ) -> dict[Any, AnyRow]:
        return await user_rows.by_ids(session, self._viewer, ids, fields)

    async def _fetch_users_by_name(
        self, session: AsyncSession, names: list[str], fields: frozenset[str]
    ) -> dict[Any, AnyRow]:
        return await user_rows.by_usernames(session, self._viewer, names, fields)

    async def _fetch_posts(
        self, session: AsyncSession, ids: list[int], fields: frozenset[str]
    ) -> dict[Any, AnyRow]:
        return await post_rows.by_ids(session, ids, fields)

    async def _fetch_tasks(
        self, session: AsyncSession, ids: list[int], fields: frozenset[str]
    ) -> dict[Any, AnyRow]:
        return await task_rows.by_ids(session, self._viewer, ids, fields)

    async def _fetch_notes(
        self, session: AsyncSession, ids: list[int], fields: frozenset[str]
    ) -> dict[Any, AnyRow]:
        return await note_rows.by_ids(session, self._viewer, ids, fields)

    async def _fetch_post_pages(
        self, session: AsyncSession, ids: list[int], request: PageRequest
    ) -> dict[int, Page[AnyRow]]:
        return await post_rows.pages_by_author(
            session,
            ids,
            fields=request.fields,
            filter=request.filter,
            order=request.order,
            window=request.window,
        )

    async def _fetch_task_pages(
        self, session: AsyncSession, ids: list[int], request: PageRequest
    ) -> dict[int, Page[AnyRow]]:
        return await task_rows.pages_by_owner(
            session,
            self._viewer,
            ids,
            fields=request.fields,
            filter=request.filter,
            order=request.order,
            window=request.window,
        )

    async def _fetch_note_pages(
        self, session: AsyncSession, ids: list[int], request: PageRequest
    ) -> dict[int, Page[AnyRow]]:
        return await note_rows.pages_by_task(
            session,
            self._viewer,
            ids,
            fields=request.fields,
            filter=request.filter,
            order=request.order,
            window=request.window,
        )

    async def _count_posts(self, session: AsyncSession, ids: list[int], filter: Any) -> dict[int, int]:
        return await post_rows.counts_by_author(session, ids, filter)

    async def _count_tasks(self, session: AsyncSession, ids: list[int], filter: Any) -> dict[int, int]:
        return await task_rows.counts_by_owner(session, self._viewer, ids, filter)

    async def _count_notes(self, session: AsyncSession, ids: list[int], filter: Any) -> dict[int, int]:
        return await note_rows.counts_by_task(session, self._viewer, ids, filter)

    # Pages become connections; their totalCount asks the matching count loader.

    def _post_page(self, author_id: int, request: PageRequest, page: Page[AnyRow]) -> Connection[Post]:
        count = partial(self.post_count_of_author.load, (author_id, request.filter))
        return build_connection(page, post_rows.LISTING, request, Post.from_row, count)

    def _task_page(self, owner_id: int, request: PageRequest, page: Page[AnyRow]) -> Connection[Task]:
        count = partial(self.task_count_of_owner.load, (owner_id, request.filter))
        return build_connection(page, task_rows.LISTING, request, Task.from_row, count)

    def _note_page(self, task_id: int, request: PageRequest, page: Page[AnyRow]) -> Connection[Note]:
        count = partial(self.note_count_of_task.load, (task_id, request.filter))
        return build_connection(page, note_rows.LISTING, request, Note.from_row, count)


def _same(value: V) -> V:
    return value
