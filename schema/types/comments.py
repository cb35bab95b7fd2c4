"""The Comment type, the comment mutations and the commentAdded subscription. Comments are public."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated

import strawberry

from db import models, visibility, writes
from db.errors import NotFound
from db.events import Event, EventOf
from db.models import utcnow
from db.pagination import AnyRow
from db.visibility import everyone
from schema.declare import after, column, contains, declared, equals, node, to_one
from schema.declare.subscriptions import added, by, changed, parent
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
from schema.relay import Node, pk_of
from schema.validation import Checker

if TYPE_CHECKING:
    from schema.types.posts import Post
    from schema.types.users import User


COMMENT_BODY_MAX = 10_000


@strawberry.input(description="All given conditions must hold. Timestamps without an offset are UTC.")
class CommentFilter:
    author_id: strawberry.ID | None = equals("user_id", id_of="User")
    body_contains: str | None = contains("body")
    created_after: datetime | None = after("created_at")


@node(models.Comment, visible=everyone, sort=("created_at",), filter=CommentFilter, entity=True)
@strawberry.type(description="A comment on a post. Public, like the post.")
class Comment(Node):
    body: str = column()
    created_at: datetime = column()
    version: int = column(description=VERSION_DOC)
    author: Annotated[User, strawberry.lazy("schema.types.users")] = to_one("user_id")
    post: Annotated[Post, strawberry.lazy("schema.types.posts")] = to_one("post_id")


COMMENTS = declared(Comment)


@strawberry.input
class CommentInput:
    body: str = strawberry.field(description="Not empty; at most 10,000 characters.")


@strawberry.type
class CommentPayload:
    comment: Comment = to_one("comment")


@strawberry.type
class DeleteCommentSuccess:
    deleted_id: strawberry.ID


Refusals = ValidationError | NotFoundError | PermissionDeniedError | AuthenticationRequiredError
AddCommentResult = Annotated[CommentPayload | Refusals, strawberry.union("AddCommentResult")]
EditRefusals = Refusals | StaleVersionError
UpdateCommentResult = Annotated[CommentPayload | EditRefusals, strawberry.union("UpdateCommentResult")]
DeleteCommentResult = Annotated[DeleteCommentSuccess | EditRefusals, strawberry.union("DeleteCommentResult")]


def _body(input: CommentInput) -> str:
    check = Checker()
    body: str = check.text("body", input.body, max_length=COMMENT_BODY_MAX)
    check.done()
    return body


def _event_of(kind: str) -> EventOf:
    return EventOf("comment", kind, owner="user_id", parent="post_id")


def _event(kind: str, row: AnyRow) -> Event:
    return _event_of(kind).of(row)


@strawberry.type
class Mutations:
    @strawberry.mutation(description="Comment on a post as the viewer.")
    @typed_refusals
    async def add_comment(self, info: Info, post_id: strawberry.ID, input: CommentInput) -> AddCommentResult:
        author_id = signed_in(info)
        post_pk = pk_of(post_id, "Post", argument="postId")
        values = {"post_id": post_pk, "user_id": author_id, "body": _body(input), "created_at": utcnow()}
        # The post must exist: its foreign key says so in the same statement.
        gone = partial(NotFound, "post", post_pk)
        return await insert_linked(
            info, COMMENTS, values, _event_of("created"), CommentPayload(), "comment", gone=gone
        )

    @strawberry.mutation(description="Change a comment's body; only its author or a superuser may.")
    @typed_refusals
    async def update_comment(
        self, info: Info, id: strawberry.ID, input: CommentInput, expected_version: ExpectedVersion = None
    ) -> UpdateCommentResult:
        signed_in(info)
        pk = pk_of(id, "Comment", argument="id")
        values = {"body": _body(input)}
        updated = _event_of("updated")
        return await update_linked(
            info,
            COMMENTS,
            visibility.COMMENTS,
            pk,
            values,
            updated,
            CommentPayload(),
            "comment",
            expected_version=expected_version,
        )

    @strawberry.mutation(description="Delete a comment; its author, the post's author or a superuser may.")
    @typed_refusals
    async def delete_comment(
        self, info: Info, id: strawberry.ID, expected_version: ExpectedVersion = None
    ) -> DeleteCommentResult:
        signed_in(info)
        pk = pk_of(id, "Comment", argument="id")
        async with info.context.db.write() as session:
            row = await writes.delete_row(
                session,
                visibility.COMMENT_DELETES,
                info.context.viewer,
                pk,
                expected_version=expected_version,
            )
            await emit(info, session, _event("deleted", row))
        return DeleteCommentSuccess(deleted_id=id)


@strawberry.type(description="A comment added, changed or deleted.")
class CommentChange(Change):
    comment: Comment | None = strawberry.field(description="The comment as it is now; null when deleted.")


@strawberry.type
class Subscriptions:
    comment_added: Comment = added(
        narrowed_by=(parent("post_id", "Post"),), description="New comments on a post."
    )
    comment_changed: CommentChange = changed(
        row="comment",
        narrowed_by=(by("post_id", "parent_id", "Post"),),
        description="Comments added, changed or deleted; on any post, or on one.",
    )
