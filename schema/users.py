"""The User type, its nested lists, and the root user queries."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry import UNSET

from db import users as user_rows
from db.pagination import AnyRow
from schema import posts, tasks
from schema.context import Info
from schema.errors import BadInput
from schema.posts import Post, PostFilter, PostOrder
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
from schema.selection import USER
from schema.tasks import Task, TaskFilter, TaskOrder

# User.avatar_url; schema/read_plans.py says the same in SQL (tests/test_compiled_reads.py compares).
MEDIA_PREFIX = "/media/"
DEFAULT_AVATAR = "/static/default-avatar.svg"


@strawberry.type(description="Someone with an account: writes posts and owns tasks.")
class User(Node):
    pk: strawberry.Private[int]
    image_file: strawberry.Private[str | None]
    username: str
    email: str | None = strawberry.field(
        description="Only the user themself and superusers see it; null for everyone else."
    )
    is_superuser: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: AnyRow) -> User:
        # Columns the query did not select are absent from the row (see schema/selection.py).
        values: Any = row._asdict()
        return cls(
            id=to_global_id("User", row.id),
            pk=row.id,
            image_file=values.get("image_file"),
            username=values.get("username"),
            email=values.get("email"),
            is_superuser=values.get("is_superuser"),
            created_at=values.get("created_at"),
        )

    @strawberry.field(description="Where the user's picture is served; a default picture when they set none.")
    def avatar_url(self) -> str:
        return f"{MEDIA_PREFIX}{self.image_file}" if self.image_file else DEFAULT_AVATAR

    @strawberry.field(description=f"This user's posts. {CONNECTION_ARGS_DOC}")
    def posts(
        self,
        info: Info,
        first: int | None = UNSET,
        after: str | None = UNSET,
        last: int | None = UNSET,
        before: str | None = UNSET,
        filter: PostFilter | None = UNSET,
        order_by: PostOrder | None = UNSET,
    ) -> Connection[Post]:
        request = posts.posts_request(
            info, first=first, after=after, last=last, before=before, filter=filter, order_by=order_by
        )
        # Not awaited here: graphql-core awaits the loader's future (see Post.author).
        return cast(Connection[Post], info.context.loaders.posts_of_author.load((self.pk, request)))

    @strawberry.field(
        description=f"This user's tasks: empty unless the viewer may see them. {CONNECTION_ARGS_DOC}"
    )
    def tasks(
        self,
        info: Info,
        first: int | None = UNSET,
        after: str | None = UNSET,
        last: int | None = UNSET,
        before: str | None = UNSET,
        filter: TaskFilter | None = UNSET,
        order_by: TaskOrder | None = UNSET,
    ) -> Connection[Task]:
        request = tasks.tasks_request(
            info, first=first, after=after, last=last, before=before, filter=filter, order_by=order_by
        )
        return cast(Connection[Task], info.context.loaders.tasks_of_owner.load((self.pk, request)))


@strawberry.enum
class UserOrderField(Enum):
    ID = "ID"
    USERNAME = "USERNAME"
    CREATED_AT = "CREATED_AT"


@strawberry.input(description="Sort users by a field; ties are broken by id in the same direction.")
class UserOrder:
    field: UserOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input
class UserFilter:
    username_starts_with: str | None = strawberry.field(
        default=None, description="Usernames are lower case; the prefix is lower-cased too."
    )

    def to_db(self) -> user_rows.UserFilter:
        prefix = self.username_starts_with
        return user_rows.UserFilter(username_starts_with=prefix.lower() if prefix else None)


def users_request(
    info: Info,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: UserFilter | None,
    order_by: UserOrder | None,
) -> PageRequest:
    return page_request(
        info,
        USER,
        user_rows.listing(info.context.viewer),
        first=first,
        after=after,
        last=last,
        before=before,
        filter=filter,
        no_filter=user_rows.UserFilter(),
        order_by=order_by,
    )


@strawberry.type
class UserQueries:
    @strawberry.field(description="The logged-in user, or null for an anonymous request.")
    async def me(self, info: Info) -> User | None:
        viewer = info.context.viewer
        return await info.context.loaders.user(info, viewer.id) if viewer.id is not None else None

    @strawberry.field(description="One user by ID or by username (give exactly one), or null.")
    async def user(
        self, info: Info, id: strawberry.ID | None = None, username: str | None = None
    ) -> User | None:
        if (id is None) == (username is None):
            raise BadInput(
                "Give exactly one of id or username.", argument="id" if id is not None else "username"
            )
        if id is not None:
            return await info.context.loaders.user(info, pk_of(id, "User", argument="id"))
        assert username is not None
        return await info.context.loaders.user_by_username(info, username.lower())

    @strawberry.field(
        description=f"All users, in id order unless `orderBy` says otherwise. {CONNECTION_ARGS_DOC}"
    )
    async def users(
        self,
        info: Info,
        first: int | None = UNSET,
        after: str | None = UNSET,
        last: int | None = UNSET,
        before: str | None = UNSET,
        filter: UserFilter | None = UNSET,
        order_by: UserOrder | None = UNSET,
    ) -> Connection[User]:
        request = users_request(
            info, first=first, after=after, last=last, before=before, filter=filter, order_by=order_by
        )
        return await info.context.loaders.users_page(request)
