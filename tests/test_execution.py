"""The fast-path executor answers exactly what graphql-core's own executor answers: data, errors,
their messages and paths, for documents that exercise every case the fast path treats specially."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import strawberry

from schema.execution.executor import FastPathExecutor

NOT_A_NUMBER: Any = "not a number"


@strawberry.type
class Leaf:
    name: str
    maybe: str | None
    count: int  # given a non-integer below, so that serializing it fails


@strawberry.type
class Branch:
    label: str
    leaf: Leaf
    leaves: list[Leaf]
    maybe_leaf: Leaf | None

    @strawberry.field
    def broken(self) -> str:
        raise ValueError("this resolver always fails")

    @strawberry.field
    async def later(self) -> Leaf:
        await asyncio.sleep(0)
        return self.leaf


@strawberry.type
class Query:
    @strawberry.field
    def branches(self) -> list[Branch]:
        return [
            Branch(
                label="a",
                leaf=Leaf(name="x", maybe=None, count=1),
                leaves=[Leaf(name="y", maybe="m", count=2)],
                maybe_leaf=None,
            ),
            Branch(
                label="b", leaf=Leaf(name="z", maybe=None, count=NOT_A_NUMBER), leaves=[], maybe_leaf=None
            ),
            Branch(label="c", leaf=None, leaves=[Leaf(name="w", maybe=None, count=3)], maybe_leaf=None),  # type: ignore[arg-type]
            Branch(label="d", leaf=Leaf(name="v", maybe=None, count=4), leaves=[None], maybe_leaf=None),  # type: ignore[list-item]
        ]

    @strawberry.field
    def one(self) -> Branch:
        return Branch(
            label="one",
            leaf=Leaf(name="n", maybe="m", count=5),
            leaves=[],
            maybe_leaf=Leaf(name="q", maybe=None, count=6),
        )


DOCUMENTS = [
    "{ branches { label leaf { name maybe } } }",
    "{ branches { label leaf { count } } }",  # a value that fails to serialize
    "{ branches { label leaves { name } } }",  # a null item in a non-null list
    "{ one { leaf { name } leaves { name } maybeLeaf { name maybe } } }",
    "{ one { label broken } }",  # a resolver error on a non-null field
    "{ one { later { name count } leaf { name } } }",  # async mixed with inline
    "{ one { a: label b: label leaf { x: name y: name } } }",
    "{ one { ... on Branch { label } ...F } } fragment F on Branch { leaf { ...L } } fragment L on Leaf { name maybe }",
    "query ($skip: Boolean!) { one { label @skip(if: $skip) leaf @include(if: $skip) { name } } }",
    "{ one { __typename leaf { __typename name } } }",
    "{ branches { label later { name } leaf { name } } }",
]


async def _answer(schema: strawberry.Schema, document: str) -> dict[str, Any]:
    result = await schema.execute(document, variable_values={"skip": True})
    errors = sorted((error.message, tuple(error.path or ())) for error in result.errors or [])
    return {"data": result.data, "errors": errors}


@pytest.mark.parametrize("document", DOCUMENTS)
async def test_fast_path_answers_like_graphql_core(document: str) -> None:
    stock = strawberry.Schema(query=Query)
    fast = strawberry.Schema(query=Query, execution_context_class=FastPathExecutor)

    assert await _answer(fast, document) == await _answer(stock, document)


async def test_fast_path_is_taken() -> None:
    """Guards the point of the class: plain fields must not reach graphql-core's execute_field."""
    calls: list[str] = []

    class Counting(FastPathExecutor):
        def execute_field(self, parent_type: Any, source: Any, field_details_list: Any, *args: Any) -> Any:
            calls.append(f"{parent_type.name}.{field_details_list[0].node.name.value}")
            return super().execute_field(parent_type, source, field_details_list, *args)

    schema = strawberry.Schema(query=Query, execution_context_class=Counting)
    result = await schema.execute("{ one { label leaf { name maybe } maybeLeaf { name } } }")

    assert result.errors is None
    # The resolver, and the null graphql-core reports; label, leaf, leaf.name, leaf.maybe inline.
    assert calls == ["Query.one", "Branch.maybeLeaf"]
