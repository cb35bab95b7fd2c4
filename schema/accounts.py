"""Accounts: register, log in and out, refresh tokens, change or delete one's own account."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry import UNSET

from db import refresh_tokens
from db import users as user_rows
from db.pagination import AnyRow
from db.refresh_tokens import Refusal
from schema.context import Info
from schema.errors import AuthenticationRequiredError, ConflictError, ValidationError, validation_error
from schema.mutations import authentication_required, login_required, typed_refusals, viewer_id
from schema.relay import to_global_id
from schema.tokens import AuthFailure
from schema.users import User
from schema.validation import Checker, changes


@strawberry.type(description="A logged-in session: send accessToken as `Authorization: Bearer ...`.")
class AuthPayload:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str = strawberry.field(
        description="Exchange it with refreshToken for new tokens before the access token expires. "
        "Each one works once; keep it secret."
    )
    user: User


@strawberry.type
class UserPayload:
    user: User


@strawberry.type
class LogoutSuccess:
    message: str


@strawberry.type
class DeleteMeSuccess:
    deleted_id: strawberry.ID


@strawberry.input
class RegisterInput:
    username: str
    email: str
    password: str


@strawberry.input
class LoginInput:
    username_or_email: str
    password: str


@strawberry.input
class LogoutInput:
    refresh_token: str | None = strawberry.field(
        default=None, description="End the login this token belongs to."
    )
    everywhere: bool = strawberry.field(default=False, description="End all of the viewer's logins.")


@strawberry.input(description="Only the fields given change; null is refused for both.")
class UpdateMeInput:
    username: str | None = UNSET
    email: str | None = UNSET


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


@strawberry.input
class DeleteMeInput:
    password: str = strawberry.field(description="The current password, to confirm.")


RegisterResult = Annotated[AuthPayload | ValidationError | ConflictError, strawberry.union("RegisterResult")]
LoginResult = Annotated[AuthPayload | AuthenticationRequiredError, strawberry.union("LoginResult")]
LogoutResult = Annotated[LogoutSuccess | AuthenticationRequiredError, strawberry.union("LogoutResult")]
RefreshTokenResult = Annotated[
    AuthPayload | AuthenticationRequiredError, strawberry.union("RefreshTokenResult")
]
UpdateMeResult = Annotated[
    UserPayload | ValidationError | ConflictError | AuthenticationRequiredError,
    strawberry.union("UpdateMeResult"),
]
ChangePasswordResult = Annotated[
    AuthPayload | ValidationError | AuthenticationRequiredError, strawberry.union("ChangePasswordResult")
]
DeleteMeResult = Annotated[
    DeleteMeSuccess | ValidationError | AuthenticationRequiredError, strawberry.union("DeleteMeResult")
]


def _refresh_ttl(info: Info) -> timedelta:
    return timedelta(seconds=info.context.services.settings.refresh_token_ttl_seconds)


def _payload(info: Info, user: AnyRow, refresh_token: str) -> AuthPayload:
    access_token, expires_at = info.context.services.tokens.issue(user.id, is_superuser=user.is_superuser)
    return AuthPayload(
        access_token=access_token,
        access_token_expires_at=expires_at,
        refresh_token=refresh_token,
        user=User.from_row(user),
    )


async def _start_login(session: AsyncSession, info: Info, user_id: int) -> str:
    """Issue a refresh token of a new family (a new login); returns the raw token."""
    await refresh_tokens.forget_expired(session, user_id)
    return await refresh_tokens.issue(session, user_id, ttl=_refresh_ttl(info))


async def _password_matches(info: Info, password: str) -> bool:
    async with info.context.db.use() as session:
        stored = await user_rows.password_hash_of(session, viewer_id(info))
    return await info.context.services.passwords.verify(stored, password)


def _refused(refusal: Refusal) -> AuthenticationRequiredError:
    return AuthenticationRequiredError(message=refusal.value, reason=AuthFailure.REFRESH_TOKEN_REFUSED)


@strawberry.type
class AccountMutations:
    @strawberry.mutation(description="Create an account and log it in.")
    @typed_refusals
    async def register(self, info: Info, input: RegisterInput) -> RegisterResult:
        check = Checker()
        username = check.username("username", input.username)
        email = check.email("email", input.email)
        password = check.password("password", input.password)
        if invalid := check.error():
            return invalid
        password_hash = await info.context.services.passwords.hash(password)
        async with info.context.db.write() as session:
            user = await user_rows.create_user(
                session, username=username, email=email, password_hash=password_hash
            )
            refresh_token = await _start_login(session, info, user.id)
        return _payload(info, user, refresh_token)

    @strawberry.mutation(description="Log in with a username or email and a password.")
    @typed_refusals
    async def login(self, info: Info, input: LoginInput) -> LoginResult:
        passwords = info.context.services.passwords
        async with info.context.db.use() as session:
            found = await user_rows.credentials(session, input.username_or_email.strip().lower())
        # Verified even when there is no such user, so both failures cost the same time.
        matches = await passwords.verify(found.password_hash if found else None, input.password)
        if found is None or not matches:
            return authentication_required(AuthFailure.BAD_CREDENTIALS)
        # The hashing parameters changed since this hash was made: store a new one.
        rehashed = (
            await passwords.hash(input.password) if passwords.needs_rehash(found.password_hash) else None
        )
        async with info.context.db.write() as session:
            if rehashed is not None:
                await user_rows.update_user(session, found.id, {"password_hash": rehashed})
            refresh_token = await _start_login(session, info, found.id)
            user = await user_rows.own_row(session, found.id)
        return _payload(info, user, refresh_token)

    @strawberry.mutation(description="Exchange a refresh token for a new access token and refresh token.")
    @typed_refusals
    async def refresh_token(self, info: Info, refresh_token: str) -> RefreshTokenResult:
        async with info.context.db.write() as session:
            # A refusal is returned, not raised: revoking a reused token's family must commit.
            rotated = await refresh_tokens.rotate(session, refresh_token, ttl=_refresh_ttl(info))
            if isinstance(rotated, Refusal):
                return _refused(rotated)
            user = await user_rows.own_row(session, rotated.user_id)
        return _payload(info, user, rotated.token)

    @strawberry.mutation(
        description="End a login (its refresh token stops working), or every login of the viewer."
    )
    async def logout(self, info: Info, input: LogoutInput) -> LogoutResult:
        if input.everywhere:
            if error := login_required(info):
                return error
            async with info.context.db.write() as session:
                await refresh_tokens.revoke_user(session, viewer_id(info))
            return LogoutSuccess(message="Logged out everywhere.")
        async with info.context.db.write() as session:
            revoked = await refresh_tokens.revoke_by_token(session, input.refresh_token or "")
        return LogoutSuccess(message="Logged out.") if revoked else _refused(Refusal.UNKNOWN)

    @strawberry.mutation(description="Change the viewer's username or email.")
    @typed_refusals
    async def update_me(self, info: Info, input: UpdateMeInput) -> UpdateMeResult:
        if error := login_required(info):
            return error
        check = Checker()
        values = changes(
            username=check.username("username", input.username), email=check.email("email", input.email)
        )
        if invalid := check.error():
            return invalid
        async with info.context.db.write() as session:
            user = await user_rows.update_user(session, viewer_id(info), values)
        return UserPayload(user=User.from_row(user))

    @strawberry.mutation(
        description="Change the viewer's password. Every login ends; the payload is a new one."
    )
    @typed_refusals
    async def change_password(self, info: Info, input: ChangePasswordInput) -> ChangePasswordResult:
        if error := login_required(info):
            return error
        check = Checker()
        new_password = check.password("newPassword", input.new_password)
        if invalid := check.error():
            return invalid
        if not await _password_matches(info, input.current_password):
            return validation_error({"currentPassword": "currentPassword is not your current password."})
        new_hash = await info.context.services.passwords.hash(new_password)
        user_id = viewer_id(info)
        async with info.context.db.write() as session:
            await user_rows.update_user(session, user_id, {"password_hash": new_hash})
            await refresh_tokens.revoke_user(session, user_id)
            refresh_token = await _start_login(session, info, user_id)
            user = await user_rows.own_row(session, user_id)
        return _payload(info, user, refresh_token)

    @strawberry.mutation(description="Delete the viewer's account with all its posts, tasks and notes.")
    @typed_refusals
    async def delete_me(self, info: Info, input: DeleteMeInput) -> DeleteMeResult:
        if error := login_required(info):
            return error
        if not await _password_matches(info, input.password):
            return validation_error({"password": "password is not your current password."})
        user_id = viewer_id(info)
        async with info.context.db.write() as session:
            image_file = await user_rows.delete_user(session, user_id)
        info.context.services.avatars.discard(image_file)
        return DeleteMeSuccess(deleted_id=to_global_id("User", user_id))
