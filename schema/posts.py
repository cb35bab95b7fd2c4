"""The Post type, the post list arguments and the root post queries."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry
from strawberry import UNSET

from db import posts as post_rows
from db.events import Event
from db.pagination import AnyRow
from schema.context import Info
from schema.errors import AuthenticationRequiredError, NotFoundError, PermissionDeniedError, ValidationError
from schema.events import emit
from schema.mutations import login_required, typed_refusals, viewer_id
from schema.relay import (
    CONNECTION_ARGS_DOC,
    Connection,
    Node,
    OrderDirection,
    PageRequest,
    page_request,
    pk_of,
    to_global_id,
)
from schema.selection import POST
from schema.time import as_utc
from schema.validation import POST_CONTENT_MAX, POST_TITLE_MAX, Checker, changes

if TYPE_CHECKING:
    from schema.users import User


@strawberry.type(description="A blog post. Public: anyone may read it.")
class Post(Node):
    pk: strawberry.Private[int]
    author_pk: strawberry.Private[int]
    title: str
    content: str
    date_posted: datetime
    # The author, when the page this post came in loaded it along (schema/loaders.py).
    author_object: strawberry.Private[Any] = None

    @classmethod
    def from_row(cls, row: AnyRow) -> Post:
        # Columns the query did not select are absent from the row (see schema/selection.py).
        values: Any = row._asdict()
        return cls(
            id=to_global_id("Post", row.id),
            pk=row.id,
            author_pk=values.get("user_id"),
            title=values.get("title"),
            content=values.get("content"),
            date_posted=values.get("date_posted"),
        )

    @strawberry.field
    def author(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")]:
        # Returned without awaiting: a loaded object completes at once, and graphql-core awaits
        # the loader's future otherwise (a coroutine here would cost a task per post).
        if self.author_object is not None:
            return cast("User", self.author_object)
        return cast("User", info.context.loaders.user(info, self.author_pk))


@strawberry.enum
class PostOrderField(Enum):
    ID = "ID"
    DATE_POSTED = "DATE_POSTED"
    TITLE = "TITLE"


@strawberry.input(description="Sort posts by a field; ties are broken by id in the same direction.")
class PostOrder:
    field: PostOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="All given conditions must hold. Timestamps without an offset are UTC.")
class PostFilter:
    author_id: strawberry.ID | None = None
    title_contains: str | None = strawberry.field(default=None, description="Case-insensitive substring.")
    posted_after: datetime | None = None
    posted_before: datetime | None = None

    def to_db(self) -> post_rows.PostFilter:
        return post_rows.PostFilter(
            author_id=pk_of(self.author_id, "User", argument="filter.authorId") if self.author_id else None,
            title_contains=self.title_contains,
            posted_after=as_utc(self.posted_after),
            posted_before=as_utc(self.posted_before),
        )


def posts_request(
    info: Info,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: PostFilter | None,
    order_by: PostOrder | None,
) -> PageRequest:
    return page_request(
        info,
        POST,
        post_rows.LISTING,
        first=first,
        after=after,
        last=last,
        before=before,
        filter=filter,
        no_filter=post_rows.PostFilter(),
        order_by=order_by,
    )


@strawberry.type
class PostQueries:
    @strawberry.field(
        description=f"All posts, in id order unless `orderBy` says otherwise. {CONNECTION_ARGS_DOC}"
    )
    async def posts(
        self,
        info: Info,
        first: int | None = UNSET,
        after: str | None = UNSET,
        last: int | None = UNSET,
        before: str | None = UNSET,
        filter: PostFilter | None = UNSET,
        order_by: PostOrder | None = UNSET,
    ) -> Connection[Post]:
        request = posts_request(
            info, first=first, after=after, last=last, before=before, filter=filter, order_by=order_by
        )
        return await info.context.loaders.posts_page(request)

    @strawberry.field(description="One post by its ID, or null.")
    async def post(self, info: Info, id: strawberry.ID) -> Post | None:
        return await info.context.loaders.post(info, pk_of(id, "Post", argument="id"))


@strawberry.input
class CreatePostInput:
    title: str = strawberry.field(description="1 to 100 characters (surrounding spaces are dropped).")
    content: str = strawberry.field(description="Not empty; at most 100,000 characters.")


@strawberry.input(description="Only the fields given change; null is refused for both.")
class UpdatePostInput:
    title: str | None = UNSET
    content: str | None = UNSET


@strawberry.type
class PostPayload:
    post: Post


@strawberry.type
class DeletePostSuccess:
    deleted_id: strawberry.ID


CreatePostResult = Annotated[
    PostPayload | ValidationError | AuthenticationRequiredError, strawberry.union("CreatePostResult")
]
UpdatePostResult = Annotated[
    PostPayload | ValidationError | NotFoundError | PermissionDeniedError | AuthenticationRequiredError,
    strawberry.union("UpdatePostResult"),
]
DeletePostResult = Annotated[
    DeletePostSuccess | NotFoundError | PermissionDeniedError | AuthenticationRequiredError,
    strawberry.union("DeletePostResult"),
]


@strawberry.type
class PostMutations:
    @strawberry.mutation(description="Write a post as the viewer.")
    @typed_refusals
    async def create_post(self, info: Info, input: CreatePostInput) -> CreatePostResult:
        if error := login_required(info):
            return error
        check = Checker()
        title = check.text("title", input.title, max_length=POST_TITLE_MAX)
        content = check.text("content", input.content, max_length=POST_CONTENT_MAX)
        if invalid := check.error():
            return invalid
        async with info.context.db.write() as session:
            row = await post_rows.create_post(
                session, author_id=viewer_id(info), title=title, content=content
            )
            await emit(info, session, Event("post", "created", row.id, owner_id=row.user_id))
        return PostPayload(post=Post.from_row(row))

    @strawberry.mutation(description="Change a post's title or content; only its author or a superuser may.")
    @typed_refusals
    async def update_post(self, info: Info, id: strawberry.ID, input: UpdatePostInput) -> UpdatePostResult:
        if error := login_required(info):
            return error
        pk = pk_of(id, "Post", argument="id")
        check = Checker()
        values = changes(
            title=check.text("title", input.title, max_length=POST_TITLE_MAX),
            content=check.text("content", input.content, max_length=POST_CONTENT_MAX),
        )
        if invalid := check.error():
            return invalid
        async with info.context.db.write() as session:
            row = await post_rows.update_post(session, info.context.viewer, pk, values)
            await emit(info, session, Event("post", "updated", pk, owner_id=row.user_id))
        return PostPayload(post=Post.from_row(row))

    @strawberry.mutation(description="Delete a post; only its author or a superuser may.")
    @typed_refusals
    async def delete_post(self, info: Info, id: strawberry.ID) -> DeletePostResult:
        if error := login_required(info):
            return error
        pk = pk_of(id, "Post", argument="id")
        async with info.context.db.write() as session:
            author_id = await post_rows.delete_post(session, info.context.viewer, pk)
            await emit(info, session, Event("post", "deleted", pk, owner_id=author_id))
        return DeletePostSuccess(deleted_id=id)
