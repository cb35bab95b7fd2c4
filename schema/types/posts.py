"""The Post type, the root post queries, the post mutations and subscriptions."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import UNSET

from db import models, visibility, writes
from db.events import Event, EventOf
from db.models import utcnow
from db.visibility import everyone
from schema.declare import (
    CountFilter,
    after,
    before,
    by_id,
    column,
    connection,
    contains,
    counted,
    equals,
    lookup,
    node,
    to_one,
)
from schema.declare.nodes import declared
from schema.declare.subscriptions import added, by, changed
from schema.errors import (
    AuthenticationRequiredError,
    NotFoundError,
    PermissionDeniedError,
    StaleVersionError,
    ValidationError,
)
from schema.execution.context import Info
from schema.mutations import (
    VERSION_DOC,
    ExpectedVersion,
    insert_linked,
    signed_in,
    typed_refusals,
    update_linked,
)
from schema.realtime.events import emit
from schema.realtime.streams import Change
from schema.relay import CONNECTION_ARGS_DOC, Connection, Node, pk_of
from schema.validation import POST_CONTENT_MAX, POST_TITLE_MAX, Checker, changes

if TYPE_CHECKING:
    from schema.types.comments import Comment
    from schema.types.users import User


@strawberry.input(description="All given conditions must hold. Timestamps without an offset are UTC.")
class PostFilter:
    author_id: strawberry.ID | None = equals("user_id", id_of="User")
    title_contains: str | None = contains("title")
    posted_after: datetime | None = after("date_posted")
    posted_before: datetime | None = before("date_posted")
    comment_count: CountFilter | None = counted(
        "Comment", "post_id", description="Posts with so many comments."
    )


@node(
    models.Post,
    visible=everyone,
    sort=("date_posted", "title"),
    filter=PostFilter,
    searchable=True,
    entity=True,
)
@strawberry.type(description="A blog post. Public: anyone may read it.")
class Post(Node):
    title: str = column()
    content: str = column()
    date_posted: datetime = column()
    version: int = column(description=VERSION_DOC)
    author: Annotated[User, strawberry.lazy("schema.types.users")] = to_one("user_id")
    comments: Connection[Annotated[Comment, strawberry.lazy("schema.types.comments")]] = connection(
        "post_id", description=f"The comments on this post. {CONNECTION_ARGS_DOC}"
    )


POSTS = declared(Post)
POST_CREATED = EventOf("post", "created", owner="user_id")
POST_UPDATED = EventOf("post", "updated", owner="user_id")


@strawberry.type
class Queries:
    posts: Connection[Post] = connection(
        description=f"All posts, in id order unless `orderBy` says otherwise. {CONNECTION_ARGS_DOC}"
    )
    post: Post | None = lookup(by_id(), description="One post by its ID, or null.")


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
    post: Post = to_one("post")


@strawberry.type
class DeletePostSuccess:
    deleted_id: strawberry.ID


CreatePostResult = Annotated[
    PostPayload | ValidationError | AuthenticationRequiredError, strawberry.union("CreatePostResult")
]
UpdatePostResult = Annotated[
    PostPayload
    | ValidationError
    | NotFoundError
    | PermissionDeniedError
    | StaleVersionError
    | AuthenticationRequiredError,
    strawberry.union("UpdatePostResult"),
]
DeletePostResult = Annotated[
    DeletePostSuccess
    | NotFoundError
    | PermissionDeniedError
    | StaleVersionError
    | AuthenticationRequiredError,
    strawberry.union("DeletePostResult"),
]


@strawberry.type
class Mutations:
    @strawberry.mutation(description="Write a post as the viewer.")
    @typed_refusals
    async def create_post(self, info: Info, input: CreatePostInput) -> CreatePostResult:
        author_id = signed_in(info)
        check = Checker()
        title = check.text("title", input.title, max_length=POST_TITLE_MAX)
        content = check.text("content", input.content, max_length=POST_CONTENT_MAX)
        check.done()
        values = {"user_id": author_id, "title": title, "content": content, "date_posted": utcnow()}
        return await insert_linked(info, POSTS, values, POST_CREATED, PostPayload(), "post")

    @strawberry.mutation(description="Change a post's title or content; only its author or a superuser may.")
    @typed_refusals
    async def update_post(
        self, info: Info, id: strawberry.ID, input: UpdatePostInput, expected_version: ExpectedVersion = None
    ) -> UpdatePostResult:
        signed_in(info)
        pk = pk_of(id, "Post", argument="id")
        check = Checker()
        values = changes(
            title=check.text("title", input.title, max_length=POST_TITLE_MAX),
            content=check.text("content", input.content, max_length=POST_CONTENT_MAX),
        )
        check.done()
        return await update_linked(
            info,
            POSTS,
            visibility.POSTS,
            pk,
            values,
            POST_UPDATED,
            PostPayload(),
            "post",
            expected_version=expected_version,
        )

    @strawberry.mutation(description="Delete a post; only its author or a superuser may.")
    @typed_refusals
    async def delete_post(
        self, info: Info, id: strawberry.ID, expected_version: ExpectedVersion = None
    ) -> DeletePostResult:
        signed_in(info)
        pk = pk_of(id, "Post", argument="id")
        async with info.context.db.write() as session:
            row = await writes.delete_row(
                session, visibility.POSTS, info.context.viewer, pk, expected_version=expected_version
            )
            await emit(info, session, Event("post", "deleted", pk, owner_id=row.user_id))
        return DeletePostSuccess(deleted_id=id)


@strawberry.type(description="A post created, changed or deleted.")
class PostChange(Change):
    post: Post | None = strawberry.field(description="The post as it is now; null when it was deleted.")


@strawberry.type
class Subscriptions:
    post_created: Post = added(
        narrowed_by=(by("author_id", "owner_id", "User"),),
        description="New posts, by anyone or by one author.",
    )
    post_changed: PostChange = changed(
        row="post",
        narrowed_by=(by("author_id", "owner_id", "User"), by("id", "id", "Post")),
        description="Posts created, changed or deleted; by anyone, one author, or one post.",
    )
