"""Accounts: register, log in and out, refresh rotation and reuse, profile changes, deletion."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Literal

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db import refresh_tokens
from db.models import Post, RefreshToken, User
from db.passwords import Passwords
from schema.admission.tokens import AccessTokens
from server import create_app
from settings import Settings, SettingsError
from tests.api import (
    CHANGE_PASSWORD,
    CREATE_POST,
    DELETE_ME,
    LOGIN,
    LOGOUT,
    ME,
    REFRESH,
    REGISTER,
    UPDATE_ME,
    mutate,
    register,
)
from tests.conftest import GraphQLClient


async def _count(session: AsyncSession, model: type) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_register_logs_in_and_normalises(gql: GraphQLClient, session: AsyncSession) -> None:
    payload = await mutate(
        gql,
        REGISTER,
        input={"username": " Ada ", "email": "Ada.Lovelace@Example.COM", "password": "analytical engine"},
    )

    assert payload["user"] | {"id": None} == {
        "id": None,
        "username": "ada",
        "email": "ada.lovelace@example.com",
        "isSuperuser": False,
    }
    me = (await gql(ME, token=payload["accessToken"]))["data"]["me"]
    assert me == {"id": payload["user"]["id"], "username": "ada", "email": "ada.lovelace@example.com"}
    stored = (await session.execute(select(User.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$") and "analytical" not in stored
    assert await _count(session, RefreshToken) == 1


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        (
            {"username": ""},
            "username",
            "username must be 1 to 50 characters of letters a-z, digits, '.', '_' or '-'.",
        ),
        (
            {"username": "a b"},
            "username",
            "username must be 1 to 50 characters of letters a-z, digits, '.', '_' or '-'.",
        ),
        (
            {"username": "x" * 51},
            "username",
            "username must be 1 to 50 characters of letters a-z, digits, '.', '_' or '-'.",
        ),
        ({"email": "not-an-email"}, "email", "email is not a valid email address"),
        ({"email": "a" * 110 + "@example.com"}, "email", "email"),
        ({"password": "short"}, "password", "password must be 8 to 256 characters long."),
    ],
)
async def test_register_validation_names_the_field(
    gql: GraphQLClient, session: AsyncSession, given: dict[str, str], field: str, message: str
) -> None:
    values = {"username": "ada", "email": "ada@example.com", "password": "long enough"} | given

    payload = await mutate(gql, REGISTER, input=values)

    assert payload["__typename"] == "ValidationError"
    [problem] = payload["fieldErrors"]
    assert problem["field"] == field
    assert problem["message"].startswith(message)
    assert await _count(session, User) == 0


async def test_register_conflicts_on_username_and_email(gql: GraphQLClient, session: AsyncSession) -> None:
    await register(gql, "ada")

    same_name = await mutate(
        gql, REGISTER, input={"username": "ADA", "email": "new@example.com", "password": "x" * 8}
    )
    same_email = await mutate(
        gql, REGISTER, input={"username": "new", "email": "ADA@example.com", "password": "x" * 8}
    )

    assert (same_name["__typename"], same_name["field"]) == ("ConflictError", "username")
    assert (same_email["__typename"], same_email["field"]) == ("ConflictError", "email")
    assert await _count(session, User) == 1
    assert await _count(session, RefreshToken) == 1  # the failed registrations left nothing behind


async def test_concurrent_registrations_exactly_one_wins(gql: GraphQLClient, session: AsyncSession) -> None:
    attempts = [
        mutate(gql, REGISTER, input={"username": "racer", "email": f"r{i}@example.com", "password": "x" * 8})
        for i in range(8)
    ]

    payloads = await asyncio.gather(*attempts)

    kinds = sorted(payload["__typename"] for payload in payloads)
    assert kinds == ["AuthPayload"] + ["ConflictError"] * 7
    assert {p["field"] for p in payloads if p["__typename"] == "ConflictError"} == {"username"}
    assert await _count(session, User) == 1
    assert await _count(session, RefreshToken) == 1


async def test_login_by_username_or_email(gql: GraphQLClient) -> None:
    await register(gql, "ada", password="analytical engine")

    by_name = await mutate(gql, LOGIN, input={"usernameOrEmail": "Ada", "password": "analytical engine"})
    by_email = await mutate(
        gql, LOGIN, input={"usernameOrEmail": "ada@EXAMPLE.com", "password": "analytical engine"}
    )

    assert by_name["__typename"] == by_email["__typename"] == "AuthPayload"
    assert by_name["refreshToken"] != by_email["refreshToken"]


class CountingHasher(PasswordHasher):
    verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        CountingHasher.verifications += 1
        return super().verify(hash, password)


async def test_unknown_user_and_wrong_password_fail_alike(gql: GraphQLClient, app: Starlette) -> None:
    await register(gql, "ada", password="analytical engine")
    passwords = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
    passwords._hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    app.state.services.passwords = passwords

    answers = []
    for login in ("nobody", "ada"):
        CountingHasher.verifications = 0
        answers.append(
            await mutate(gql, LOGIN, input={"usernameOrEmail": login, "password": "wrong password"})
        )
        # The same Argon2 work either way, so the time taken does not tell them apart.
        assert CountingHasher.verifications == 1

    assert (
        answers[0]
        == answers[1]
        == {
            "__typename": "AuthenticationRequiredError",
            "message": "Wrong username, email or password.",
            "reason": "BAD_CREDENTIALS",
        }
    )


async def test_login_rehashes_when_parameters_change(
    gql: GraphQLClient, app: Starlette, session: AsyncSession
) -> None:
    await register(gql, "ada", password="analytical engine")
    before = (await session.execute(select(User.password_hash))).scalar_one()
    app.state.services.passwords = Passwords(time_cost=2, memory_kib=2048, parallelism=1)

    await mutate(gql, LOGIN, input={"usernameOrEmail": "ada", "password": "analytical engine"})

    await session.rollback()  # a new snapshot: the first read's transaction saw the old row
    after = (await session.execute(select(User.password_hash))).scalar_one()
    assert "m=1024,t=1" in before
    assert "m=2048,t=2" in after
    assert (await mutate(gql, LOGIN, input={"usernameOrEmail": "ada", "password": "analytical engine"}))[
        "__typename"
    ] == "AuthPayload"


async def test_refresh_rotates_and_reuse_revokes_the_family(gql: GraphQLClient) -> None:
    first = await register(gql, "ada")

    second = await mutate(gql, REFRESH, refreshToken=first["refreshToken"])
    assert second["__typename"] == "AuthPayload"
    assert (await gql(ME, token=second["accessToken"]))["data"]["me"]["username"] == "ada"

    reused = await mutate(gql, REFRESH, refreshToken=first["refreshToken"])
    assert reused["__typename"] == "AuthenticationRequiredError"
    assert reused["reason"] == "REFRESH_TOKEN_REFUSED"
    assert "already used" in reused["message"]
    # The thief's replay ended the whole login: the legitimate newer token is refused too.
    after = await mutate(gql, REFRESH, refreshToken=second["refreshToken"])
    assert after["__typename"] == "AuthenticationRequiredError"
    assert "log in again" in after["message"]


async def test_other_logins_survive_a_revoked_family(gql: GraphQLClient) -> None:
    phone = await register(gql, "ada", password="analytical engine")
    laptop = await mutate(gql, LOGIN, input={"usernameOrEmail": "ada", "password": "analytical engine"})

    await mutate(gql, LOGOUT, input={"refreshToken": phone["refreshToken"]})

    assert (await mutate(gql, REFRESH, refreshToken=phone["refreshToken"]))[
        "__typename"
    ] == "AuthenticationRequiredError"
    assert (await mutate(gql, REFRESH, refreshToken=laptop["refreshToken"]))["__typename"] == "AuthPayload"


async def test_logout_everywhere_needs_a_viewer_and_ends_all_logins(gql: GraphQLClient) -> None:
    phone = await register(gql, "ada", password="analytical engine")
    laptop = await mutate(gql, LOGIN, input={"usernameOrEmail": "ada", "password": "analytical engine"})

    anonymous = await mutate(gql, LOGOUT, input={"everywhere": True})
    done = await mutate(gql, LOGOUT, phone["accessToken"], input={"everywhere": True})

    assert anonymous["reason"] == "NOT_LOGGED_IN"
    assert done == {"__typename": "LogoutSuccess", "message": "Logged out everywhere."}
    for login in (phone, laptop):
        assert (await mutate(gql, REFRESH, refreshToken=login["refreshToken"]))[
            "__typename"
        ] == "AuthenticationRequiredError"


async def test_logout_with_an_unknown_token_says_so(gql: GraphQLClient) -> None:
    payload = await mutate(gql, LOGOUT, input={"refreshToken": "made-up"})
    assert payload["reason"] == "REFRESH_TOKEN_REFUSED"


async def test_expired_refresh_token_is_refused(gql: GraphQLClient, session: AsyncSession) -> None:
    await register(gql, "ada")
    user_id = (await session.execute(select(User.id))).scalar_one()
    stale = (await refresh_tokens.issue(session, user_id, ttl=timedelta(seconds=-1))).token
    await session.commit()

    payload = await mutate(gql, REFRESH, refreshToken=stale)

    assert payload["message"] == "This refresh token has expired; log in again."


async def test_expired_and_forged_access_tokens_say_so(gql: GraphQLClient, settings: Settings) -> None:
    """A token that fails is answered 401 with a code a client acts on (refresh, or log in
    again), for queries and mutations alike, whichever media type; never as anonymous."""
    user_id = int(__import__("base64").b64decode((await register(gql, "ada"))["user"]["id"]).split(b":")[1])
    assert settings.secret_key is not None
    expired, _ = AccessTokens(settings.secret_key, timedelta(seconds=-60)).issue(user_id, is_superuser=False)
    forged, _ = AccessTokens("another-secret-" + "y" * 40, timedelta(minutes=5)).issue(
        user_id, is_superuser=True
    )
    post = {"query": CREATE_POST, "variables": {"input": {"title": "t", "content": "c"}}}
    client = gql.client
    for token, code in (
        (expired, "TOKEN_EXPIRED"),
        (forged, "TOKEN_INVALID"),
        ("not.a.jwt", "TOKEN_INVALID"),
    ):
        for body in ({"query": ME}, post):
            for accept in ("application/json", "application/graphql-response+json"):
                headers = {"Authorization": f"Bearer {token}", "Accept": accept}
                response = await client.post("/graphql", json=body, headers=headers)
                assert response.status_code == 401, response.text
                assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
                [error] = response.json()["errors"]
                assert error["extensions"]["code"] == code and "data" not in response.json()
    # Logging in (or refreshing) works whatever stale token the client still sends.
    login = {
        "query": LOGIN,
        "variables": {"input": {"usernameOrEmail": "ada", "password": "correct horse battery"}},
    }
    relogged = await client.post("/graphql", json=login, headers={"Authorization": f"Bearer {expired}"})
    assert relogged.json()["data"]["login"]["__typename"] == "AuthPayload"


async def test_update_me_is_partial_and_checks_conflicts(gql: GraphQLClient) -> None:
    ada = await register(gql, "ada")
    await register(gql, "bob")

    renamed = await mutate(gql, UPDATE_ME, ada["accessToken"], input={"username": "countess"})
    taken = await mutate(
        gql,
        UPDATE_ME,
        ada["accessToken"],
        input={"email": "bob@example.com", "currentPassword": "correct horse battery"},
    )
    nulled = await mutate(gql, UPDATE_ME, ada["accessToken"], input={"username": None})

    assert renamed == {
        "__typename": "UserPayload",
        "user": {"username": "countess", "email": "ada@example.com"},
    }
    assert (taken["__typename"], taken["field"]) == ("ConflictError", "email")
    assert nulled["fieldErrors"] == [{"field": "username", "message": "username must not be null."}]


async def test_changing_the_email_needs_the_password(gql: GraphQLClient) -> None:
    """Otherwise a stolen token could probe which addresses have accounts (ConflictError or not)."""
    ada = await register(gql, "ada")
    await register(gql, "bob")

    without = await mutate(gql, UPDATE_ME, ada["accessToken"], input={"email": "bob@example.com"})
    wrong = await mutate(
        gql, UPDATE_ME, ada["accessToken"], input={"email": "bob@example.com", "currentPassword": "guess"}
    )
    changed = await mutate(
        gql,
        UPDATE_ME,
        ada["accessToken"],
        input={"email": "ada@new.example", "currentPassword": "correct horse battery"},
    )

    assert without["fieldErrors"] == [
        {"field": "currentPassword", "message": "currentPassword is needed to change the email address."}
    ]
    assert wrong["fieldErrors"][0]["field"] == "currentPassword"
    assert changed["user"]["email"] == "ada@new.example"


async def test_change_password_ends_other_logins(gql: GraphQLClient) -> None:
    ada = await register(gql, "ada", password="old password")

    wrong = await mutate(
        gql,
        CHANGE_PASSWORD,
        ada["accessToken"],
        input={"currentPassword": "nope", "newPassword": "new password"},
    )
    changed = await mutate(
        gql,
        CHANGE_PASSWORD,
        ada["accessToken"],
        input={"currentPassword": "old password", "newPassword": "new password"},
    )

    assert wrong["fieldErrors"] == [
        {"field": "currentPassword", "message": "currentPassword is not your current password."}
    ]
    assert changed["__typename"] == "AuthPayload"
    assert (await mutate(gql, REFRESH, refreshToken=ada["refreshToken"]))[
        "__typename"
    ] == "AuthenticationRequiredError"
    assert (await mutate(gql, REFRESH, refreshToken=changed["refreshToken"]))["__typename"] == "AuthPayload"
    old_login = await mutate(gql, LOGIN, input={"usernameOrEmail": "ada", "password": "old password"})
    assert old_login["reason"] == "BAD_CREDENTIALS"


async def test_delete_me_removes_everything_of_the_user(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = await register(gql, "ada", password="analytical engine")
    await register(gql, "bob")
    await mutate(gql, CREATE_POST, ada["accessToken"], input={"title": "bye", "content": "soon"})

    refused = await mutate(gql, DELETE_ME, ada["accessToken"], input={"password": "wrong"})
    deleted = await mutate(gql, DELETE_ME, ada["accessToken"], input={"password": "analytical engine"})

    assert refused["__typename"] == "ValidationError"
    assert deleted == {"__typename": "DeleteMeSuccess", "deletedId": ada["user"]["id"]}
    assert (await session.execute(select(User.username))).scalars().all() == ["bob"]
    assert await _count(session, Post) == 0
    assert await _count(session, RefreshToken) == 1  # bob's
    # The deleted user's access token is revoked with the account: it reads and writes nothing.
    for body in (
        {"query": ME},
        {"query": CREATE_POST, "variables": {"input": {"title": "ghost", "content": "boo"}}},
    ):
        after = await gql.client.post(
            "/graphql", json=body, headers={"Authorization": f"Bearer {ada['accessToken']}"}
        )
        assert after.status_code == 401 and after.json()["errors"][0]["extensions"]["code"] == "TOKEN_REVOKED"


def test_outside_development_a_secret_is_required(settings: Settings) -> None:
    for secret in (None, ""):
        with pytest.raises(SettingsError, match="SECRET_KEY"):
            create_app(replace(settings, app_env="production", secret_key=secret))
    with pytest.raises(SettingsError, match="at least 32"):
        create_app(replace(settings, app_env="production", secret_key="short"))


def test_in_development_without_a_secret_tokens_are_signed_with_a_random_key(settings: Settings) -> None:
    """No key that anyone can read in the repository ever signs a token: a development server
    without SECRET_KEY makes one at random (quill serve shares it with its workers)."""
    first = replace(settings, app_env="development", secret_key=None)
    key = first.signing_key()
    assert len(key) >= 32 and key == first.signing_key()
    assert "secret" not in key.lower()
    app = create_app(first)
    token, _ = app.state.services.tokens.issue(1, is_superuser=True)
    assert AccessTokens("another-secret-" + "y" * 40, timedelta(minutes=5)).read(token).failure is not None
