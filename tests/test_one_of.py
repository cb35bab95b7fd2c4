"""@oneOf inputs: `user(by: {id} | {username})` names one user by exactly one key, the GraphQL
spec's @oneOf refuses none or two, and the deprecated flat arguments still answer the same."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import GraphQLClient
from tests.factories import make_user

BY = "query ($by: UserBy) { user(by: $by) { username } }"


async def test_by_id_and_by_username_answer_as_the_deprecated_arguments(
    gql: GraphQLClient, session: AsyncSession
) -> None:
    await make_user(session, username="ada")
    [edge] = (await gql("{ users { edges { node { id } } } }"))["data"]["users"]["edges"]
    user_id = edge["node"]["id"]

    by_id = await gql(f'{{ user(by: {{id: "{user_id}"}}) {{ username }} }}')
    by_name = await gql('{ user(by: {username: "ADA"}) { username } }')
    by_variable = await gql(BY, {"by": {"username": "ada"}})
    old = await gql(f'{{ a: user(id: "{user_id}") {{ username }} b: user(username: "ada") {{ username }} }}')

    expected = {"user": {"username": "ada"}}
    assert by_id["data"] == by_name["data"] == by_variable["data"] == expected
    assert old["data"] == {"a": {"username": "ada"}, "b": {"username": "ada"}}
    assert (await gql('{ user(by: {username: "nobody"}) { username } }'))["data"] == {"user": None}
    non_null = "query ($name: String!) { user(by: {username: $name}) { username } }"
    assert (await gql(non_null, {"name": "ada"}))["data"] == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ user(by: {}) { username } }", "OneOf Input Object 'UserBy' must specify exactly one key."),
        (
            '{ user(by: {id: "VXNlcjox", username: "ada"}) { username } }',
            "OneOf Input Object 'UserBy' must specify exactly one key.",
        ),
        ("{ user(by: {username: null}) { username } }", "Field 'UserBy.username' must be non-null."),
        (
            "query ($name: String) { user(by: {username: $name}) { username } }",
            "Variable '$name' must be non-nullable to be used for OneOf Input Object 'UserBy'.",
        ),
        (
            "query ($name: String) { ...Ada } fragment Ada on Query { user(by: {username: $name}) { username } }",
            "Variable '$name' must be non-nullable to be used for OneOf Input Object 'UserBy'.",
        ),
        ("{ user(by: {username: $nobody}) { username } }", "Variable '$nobody' is not defined."),
    ],
)
async def test_none_or_two_keys_are_validation_errors_naming_the_input(
    gql: GraphQLClient, query: str, message: str
) -> None:
    body = await gql(query, errors=True)

    [error] = body["errors"]
    assert error["message"] == message
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "data" not in body


@pytest.mark.parametrize("by", [{}, {"id": "VXNlcjox", "username": "ada"}, {"username": None}])
async def test_variables_with_none_or_two_keys_are_bad_user_input(gql: GraphQLClient, by: Any) -> None:
    body = await gql(BY, {"by": by}, errors=True)

    [error] = body["errors"]
    assert "UserBy" in error["message"] or "'username' must be non-null" in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "data" not in body


async def test_introspection_shows_one_of_and_the_deprecated_arguments(gql: GraphQLClient) -> None:
    body = await gql(
        """{
          __type(name: "UserBy") { isOneOf inputFields { name type { kind name } } }
          __schema { queryType { fields { name args(includeDeprecated: true) { name isDeprecated } } } }
        }"""
    )

    by = body["data"]["__type"]
    assert by["isOneOf"] is True
    assert [(f["name"], f["type"]["kind"]) for f in by["inputFields"]] == [
        ("id", "SCALAR"),
        ("username", "SCALAR"),
    ]
    [user] = [f for f in body["data"]["__schema"]["queryType"]["fields"] if f["name"] == "user"]
    assert [(a["name"], a["isDeprecated"]) for a in user["args"]] == [
        ("by", False),
        ("id", True),
        ("username", True),
    ]
