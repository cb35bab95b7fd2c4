"""A one-field mutation completed without graphql-core's framing (schema/execution/root_field.py)
answers exactly as graphql-core does: the same data, errors, nulls and key order, for payloads,
typed errors, aliases, fragments, and the shapes it leaves to graphql-core."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.models import User
from schema.execution.root_field import Leaf, Row, root_field
from schema.relay import to_global_id
from tests.api import without_keys
from tests.factories import make_post, make_user
from tests.pairs import Pair

pytestmark = pytest.mark.one_path  # it compares both paths itself

M1 = "mutation ($input: CreatePostInput!) { createPost(input: $input) { __typename ... on PostPayload { post { id } } } }"
NAMED = """mutation Write($input: CreatePostInput!) { made: createPost(input: $input) {
  kind: __typename ...Made ... on Error { message } ... on ValidationError { fieldErrors { field message } } } }
fragment Made on PostPayload { post { title content author { username } } __typename }"""
ERRORS_ONLY = """mutation ($input: CreatePostInput!) { createPost(input: $input) {
  __typename ... on Error { message } ... on AuthenticationRequiredError { reason } } }"""
UPDATE = """mutation ($id: ID!, $input: UpdatePostInput!, $v: Int) { updatePost(id: $id, input: $input, expectedVersion: $v) {
  __typename ... on Error { message } ... on NotFoundError { id } ... on StaleVersionError { id currentVersion }
  ... on PostPayload { post { title version } } } }"""
DELETE = """mutation ($id: ID!) { deletePost(id: $id) { __typename ... on DeletePostSuccess { deletedId }
  ... on Error { message } } }"""
INCLUDED = """mutation ($input: CreatePostInput!, $yes: Boolean!) { createPost(input: $input) {
  __typename ... on PostPayload @include(if: $yes) { post { title } } } }"""


def _shape_of(app: Starlette, document: str) -> Any:
    parsed = parse(document)
    operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
    return root_field(app.state.operations.schema, operations[0], fragments)


def test_the_shapes_it_prints_and_the_ones_it_leaves(app: Starlette) -> None:
    m1 = _shape_of(app, M1)
    assert m1 is not None and m1.key == "createPost"
    [(typename, _), (post, row)] = m1.shapes["PostPayload"]
    assert (typename, post) == ("__typename", "post") and isinstance(row, Row)
    named = _shape_of(app, NAMED)
    assert [key for key, _ in named.shapes["PostPayload"]] == ["kind", "post", "__typename"]
    assert named.shapes["ValidationError"] is None  # a list of objects: graphql-core completes it
    [_, (message, leaf)] = named.shapes["AuthenticationRequiredError"]
    assert message == "message" and isinstance(leaf, Leaf)
    assert _shape_of(app, INCLUDED) is None  # a directive: its condition is the variables'
    two = "mutation ($input: CreatePostInput!) { a: createPost(input: $input) { __typename } b: createPost(input: $input) { __typename } }"
    assert _shape_of(app, two) is None
    assert _shape_of(app, "{ posts(first: 1) { totalCount } }") is None


def _without_ids(answer: Any) -> Any:
    return without_keys(answer, "id", "deletedId")


async def _both(
    pair: Pair, document: str, variables: Callable[[str], dict[str, Any]], token: str | None
) -> tuple[Any, str]:
    """Each app's answer (to variables made for it: its own rows), equal but for the new ids;
    and what answered on the compiled app."""
    answers = []
    for side, client in (("reference", pair.reference), ("compiled", pair.compiled)):
        answers.append(await _post(client, document, variables(side), token))
    reference, compiled = answers
    assert json.dumps(_without_ids(compiled)) == json.dumps(_without_ids(reference)), (
        f"\n{document}\ncompiled: {compiled}\nreference: {reference}"
    )
    return compiled, pair.executors.seen[-1]


async def _post(
    client: httpx.AsyncClient, document: str, variables: dict[str, Any], token: str | None
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": document, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_answers_are_graphql_cores(
    pair: Pair, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    writer = await make_user(session, username="writer")
    other = await make_user(session, username="other")
    posts = {side: await make_post(session, writer, title="Old") for side in ("reference", "compiled")}
    theirs = await make_post(session, other, title="Theirs")
    token = token_for(writer)

    def fresh(title: str) -> Callable[[str], dict[str, Any]]:
        return lambda side: {"input": {"title": title, "content": "Body."}}

    def update(pk: Callable[[str], int], **more: Any) -> Callable[[str], dict[str, Any]]:
        return lambda side: {"id": to_global_id("Post", pk(side)), "input": {"title": "New"}, **more}

    answer, executor = await _both(pair, M1, fresh("One"), token)
    assert answer["data"]["createPost"]["__typename"] == "PostPayload"
    assert executor == "compiled"  # the row as a compiled statement built it, on every engine
    answer, executor = await _both(pair, NAMED, fresh("Two"), token)
    assert list(answer["data"]["made"]) == ["kind", "post", "__typename"]
    assert answer["data"]["made"]["post"] == {
        "title": "Two",
        "content": "Body.",
        "author": {"username": "writer"},
    }
    # Typed errors: a list of objects (graphql-core completes it), leaves and an enum (here).
    answer, _ = await _both(pair, NAMED, fresh(""), token)
    assert answer["data"]["made"]["kind"] == "ValidationError" and answer["data"]["made"]["fieldErrors"]
    answer, _ = await _both(pair, ERRORS_ONLY, fresh("Three"), None)
    assert answer["data"]["createPost"]["reason"] == "NOT_LOGGED_IN"
    answer, _ = await _both(pair, UPDATE, update(lambda side: posts[side].id), token)
    assert answer["data"]["updatePost"]["post"] == {"title": "New", "version": 2}
    answer, _ = await _both(pair, UPDATE, update(lambda side: posts[side].id, v=1), token)
    assert answer["data"]["updatePost"]["__typename"] == "StaleVersionError"
    answer, _ = await _both(pair, UPDATE, update(lambda side: theirs.id), token)
    assert answer["data"]["updatePost"]["__typename"] == "PermissionDeniedError"
    answer, _ = await _both(pair, UPDATE, update(lambda side: 10**9), token)
    assert answer["data"]["updatePost"]["__typename"] == "NotFoundError"
    # An id that is not one: the resolver raises, the non-null root field makes the answer null.
    answer, _ = await _both(pair, UPDATE, lambda side: {"id": "nope", "input": {"title": "X"}}, token)
    assert answer["data"] is None and answer["errors"][0]["path"] == ["updatePost"]
    answer, _ = await _both(pair, DELETE, lambda side: {"id": to_global_id("Post", posts[side].id)}, token)
    assert answer["data"]["deletePost"]["__typename"] == "DeletePostSuccess"
    answer, executor = await _both(pair, INCLUDED, lambda side: {**fresh("Five")(side), "yes": True}, token)
    assert answer["data"]["createPost"]["post"] == {"title": "Five"} and executor == "resolvers"
