"""Accounts: register, log in and out, refresh tokens, change or delete one's own account."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry import UNSET

from db import refresh_tokens, revocations
from db import users as user_rows
from db.events import Event
from db.refresh_tokens import Issued, Refusal
from db.visibility import Viewer
from schema.admission.admission import takes_credentials
from schema.admission.cost import price
from schema.declare import linked, to_one
from schema.errors import (
    AuthenticationRequiredError,
    AuthFailure,
    ConflictError,
    ValidationError,
    validation_error,
)
from schema.execution.context import Info
from schema.mutations import authentication_required, signed_in, typed_refusals
from schema.realtime.events import emit
from schema.relay import to_global_id
from schema.types.users import User
from schema.validation import Checker, changes

# Each of these hashes a password on purpose (tens of milliseconds of CPU): the rate limit lets a
# client make a few per second, which also keeps password guessing slow.
PASSWORD_MUTATION_COST = 500


@strawberry.type(description="A logged-in session: send accessToken as `Authorization: Bearer ...`.")
class AuthPayload:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str = strawberry.field(
        description="Exchange it with refreshToken for new tokens before the access token expires. "
        "Each one works once; keep it secret."
    )
    user: User = to_one("user")


@strawberry.type
class UserPayload:
    user: User = to_one("user")


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
    current_password: str | None = strawberry.field(
        default=None, description="Needed to change the email address (it proves the account is yours)."
    )


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


def _payload(info: Info, user_id: int, is_superuser: bool, issued: Issued) -> AuthPayload:
    tokens = info.context.services.tokens
    access_token, expires_at = tokens.issue(user_id, is_superuser=is_superuser, login=issued.family)
    payload = AuthPayload(
        access_token=access_token, access_token_expires_at=expires_at, refresh_token=issued.token
    )
    return linked(payload, user=user_id, seen_by=Viewer(user_id, is_superuser))


async def _start_login(session: AsyncSession, info: Info, user_id: int) -> Issued:
    """Issue a refresh token of a new family (a new login)."""
    await refresh_tokens.forget_expired(session, user_id)
    return await refresh_tokens.issue(session, user_id, ttl=_refresh_ttl(info))


async def _password_matches(info: Info, password: str) -> bool:
    async with info.context.db.use() as session:
        stored = await user_rows.password_hash_of(session, signed_in(info))
    return await info.context.services.passwords.verify(stored, password)


async def _revoke(info: Info, session: AsyncSession, user_id: int, login: str | None = None) -> None:
    """End the user's access tokens (of one login, or all) on every process, once this commits."""
    revoked = await revocations.revoke(session, user_id, login=login)
    await emit(info, session, Event("revocation", "revoked", user_id, login=login, at=revoked.at.timestamp()))


def _refused(refusal: Refusal) -> AuthenticationRequiredError:
    return AuthenticationRequiredError(message=refusal.value, reason=AuthFailure.REFRESH_TOKEN_REFUSED)


@strawberry.type
class Mutations:
    @strawberry.mutation(
        description="Create an account and log it in.",
        metadata={**takes_credentials(), **price(PASSWORD_MUTATION_COST)},
    )
    @typed_refusals
    async def register(self, info: Info, input: RegisterInput) -> RegisterResult:
        check = Checker()
        username = check.username("username", input.username)
        email = check.email("email", input.email)
        password = check.password("password", input.password)
        check.done()
        password_hash = await info.context.services.passwords.hash(password)
        async with info.context.db.write() as session:
            user = await user_rows.create_user(
                session, username=username, email=email, password_hash=password_hash
            )
            issued = await _start_login(session, info, user.id)
        return _payload(info, user.id, user.is_superuser, issued)

    @strawberry.mutation(
        description="Log in with a username or email and a password.",
        metadata={**takes_credentials(), **price(PASSWORD_MUTATION_COST)},
    )
    @typed_refusals
    async def login(self, info: Info, input: LoginInput) -> LoginResult:
        services = info.context.services
        login_name = input.username_or_email.strip().lower()
        # Failed logins are limited per account, whatever address they come from: each attempt
        # takes a point, which a successful one gives back.
        attempts = services.login_attempts
        if attempts is not None and await attempts.charge(f"login:{login_name}", 1) is not None:
            return authentication_required(AuthFailure.TOO_MANY_ATTEMPTS)
        async with info.context.db.use() as session:
            found = await user_rows.credentials(session, login_name)
        # Verified even when there is no such user, so both failures cost the same time.
        matches = await services.passwords.verify(found.password_hash if found else None, input.password)
        if found is None or not matches:
            return authentication_required(AuthFailure.BAD_CREDENTIALS)
        if attempts is not None:
            await attempts.charge(f"login:{login_name}", -1)
        # The hashing parameters changed since this hash was made: store a new one.
        rehashed = (
            await services.passwords.hash(input.password)
            if services.passwords.needs_rehash(found.password_hash)
            else None
        )
        async with info.context.db.write() as session:
            if rehashed is not None:
                await user_rows.update_user(session, found.id, {"password_hash": rehashed})
            issued = await _start_login(session, info, found.id)
        return _payload(info, found.id, found.is_superuser, issued)

    @strawberry.mutation(
        description="Exchange a refresh token for a new access token and refresh token.",
        metadata=takes_credentials(),
    )
    @typed_refusals
    async def refresh_token(self, info: Info, refresh_token: str) -> RefreshTokenResult:
        async with info.context.db.write() as session:
            # A refusal is returned, not raised: revoking a reused token's family must commit.
            rotated = await refresh_tokens.rotate(session, refresh_token, ttl=_refresh_ttl(info))
            if isinstance(rotated, Refusal):
                return _refused(rotated)
        return _payload(info, rotated.user_id, rotated.is_superuser, rotated.issued)

    @strawberry.mutation(
        description="End a login (its refresh token stops working), or every login of the viewer.",
        metadata=takes_credentials(),
    )
    @typed_refusals
    async def logout(self, info: Info, input: LogoutInput) -> LogoutResult:
        if input.everywhere:
            user_id = signed_in(info)
            async with info.context.db.write() as session:
                await refresh_tokens.revoke_user(session, user_id)
                await _revoke(info, session, user_id)
            return LogoutSuccess(message="Logged out everywhere.")
        async with info.context.db.write() as session:
            revoked = await refresh_tokens.revoke_by_token(session, input.refresh_token or "")
            if revoked is not None:
                user_id, family = revoked
                await _revoke(info, session, user_id, login=family)
        return LogoutSuccess(message="Logged out.") if revoked else _refused(Refusal.UNKNOWN)

    @strawberry.mutation(
        description="Change the viewer's username or email (the email needs the current password).",
        metadata=price(PASSWORD_MUTATION_COST),
    )
    @typed_refusals
    async def update_me(self, info: Info, input: UpdateMeInput) -> UpdateMeResult:
        user_id = signed_in(info)
        check = Checker()
        values = changes(
            username=check.username("username", input.username), email=check.email("email", input.email)
        )
        check.done()
        if "email" in values:
            # Without it, anyone holding a stolen token could learn which addresses have accounts.
            if not input.current_password:
                return validation_error(
                    {"currentPassword": "currentPassword is needed to change the email address."}
                )
            if not await _password_matches(info, input.current_password):
                return validation_error({"currentPassword": "currentPassword is not your current password."})
        async with info.context.db.write() as session:
            await user_rows.update_user(session, user_id, values)
        return linked(UserPayload(), user=user_id)

    @strawberry.mutation(
        description="Change the viewer's password. Every login ends; the payload is a new one.",
        metadata=price(PASSWORD_MUTATION_COST),
    )
    @typed_refusals
    async def change_password(self, info: Info, input: ChangePasswordInput) -> ChangePasswordResult:
        user_id = signed_in(info)
        check = Checker()
        new_password = check.password("newPassword", input.new_password)
        check.done()
        if not await _password_matches(info, input.current_password):
            return validation_error({"currentPassword": "currentPassword is not your current password."})
        new_hash = await info.context.services.passwords.hash(new_password)
        async with info.context.db.write() as session:
            await user_rows.update_user(session, user_id, {"password_hash": new_hash})
            await refresh_tokens.revoke_user(session, user_id)
            await _revoke(info, session, user_id)
            issued = await _start_login(session, info, user_id)
            user = await user_rows.own_row(session, user_id)
        return _payload(info, user_id, user.is_superuser, issued)

    @strawberry.mutation(
        description="Delete the viewer's account with all its posts, tasks and notes.",
        metadata=price(PASSWORD_MUTATION_COST),
    )
    @typed_refusals
    async def delete_me(self, info: Info, input: DeleteMeInput) -> DeleteMeResult:
        user_id = signed_in(info)
        if not await _password_matches(info, input.password):
            return validation_error({"password": "password is not your current password."})
        async with info.context.db.write() as session:
            image_file = await user_rows.delete_user(session, user_id)
            await _revoke(info, session, user_id)
        info.context.services.avatars.discard(image_file)
        return DeleteMeSuccess(deleted_id=to_global_id("User", user_id))
