"""The User type, its lists, and the root user queries."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from sqlalchemy import ColumnElement, String, case, literal_column

from db import models
from db.visibility import can_see_email, everyone
from schema.declare import (
    CountFilter,
    by_column,
    by_id,
    column,
    connection,
    counted,
    expression,
    lookup,
    node,
    starts_with,
    viewer,
)
from schema.relay import CONNECTION_ARGS_DOC, Connection, Node

if TYPE_CHECKING:
    from schema.types.comments import Comment
    from schema.types.posts import Post
    from schema.types.tasks import Task

MEDIA_PREFIX = "/media/"
DEFAULT_AVATAR = "/static/default-avatar.svg"


def avatar_url(image_file: ColumnElement[Any]) -> ColumnElement[Any]:
    """The stored file under the media prefix, else the default picture."""
    return case(
        (
            (image_file.is_not(None)) & (image_file != literal_column("''")),
            literal_column(f"'{MEDIA_PREFIX}'", String) + image_file,
        ),
        else_=literal_column(f"'{DEFAULT_AVATAR}'", String),
    )


@strawberry.input
class UserFilter:
    username_starts_with: str | None = starts_with(
        "username", lower=True, description="Usernames are lower case; the prefix is lower-cased too."
    )
    post_count: CountFilter | None = counted("Post", "user_id", description="Users with so many posts.")
    task_count: CountFilter | None = counted(
        "Task", "owner_id", description="Users with so many tasks (that the viewer may see)."
    )


@node(models.User, visible=everyone, sort=("username", "created_at"), filter=UserFilter, entity=True)
@strawberry.type(description="Someone with an account: writes posts and owns tasks.")
class User(Node):
    username: str = column()
    email: str | None = column(
        rule=can_see_email,
        description="Only the user themself and superusers see it; null for everyone else.",
    )
    is_superuser: bool = column()
    created_at: datetime = column()
    avatar_url: str = expression(
        avatar_url,
        reads=("image_file",),
        description="Where the user's picture is served; a default picture when they set none.",
    )
    posts: Connection[Annotated[Post, strawberry.lazy("schema.types.posts")]] = connection(
        "user_id", description=f"This user's posts. {CONNECTION_ARGS_DOC}"
    )
    tasks: Connection[Annotated[Task, strawberry.lazy("schema.types.tasks")]] = connection(
        "owner_id",
        description=f"This user's tasks: empty unless the viewer may see them. {CONNECTION_ARGS_DOC}",
    )
    comments: Connection[Annotated[Comment, strawberry.lazy("schema.types.comments")]] = connection(
        "user_id", description=f"The comments this user wrote. {CONNECTION_ARGS_DOC}"
    )


@strawberry.type
class Queries:
    me: User | None = viewer(description="The logged-in user, or null for an anonymous request.")
    user: User | None = lookup(
        by_id(),
        by_column("username", normalize=str.lower),
        one_of="UserBy",
        description='One user, or null: `user(by: {username: "ada"})` or `user(by: {id: ...})`.',
    )
    users: Connection[User] = connection(
        description=f"All users, in id order unless `orderBy` says otherwise. {CONNECTION_ARGS_DOC}"
    )
