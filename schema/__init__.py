"""The GraphQL schema: the root types, assembled from the noun modules of schema/types.

The schema is types and resolvers only. How a request becomes an operation that may run is
schema/admission/; how an operation runs, schema/execution/ (and schema/compiled/ for one SQL
statement per query); what a field reads is declared once with its type (schema/declare/).
"""

from __future__ import annotations

import functools
from datetime import datetime

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from schema import types
from schema.execution.names import RememberingNameConverter
from schema.scalars import DATETIME


@functools.cache
def build_schema(federation: bool = False) -> strawberry.Schema:
    """The schema (built once per process: it holds no state of any app that serves it); with
    `federation`, as an Apollo Federation v2 subgraph (schema/federation.py)."""
    queries = types.roots("Queries")
    if federation:
        from schema.federation import federation_queries

        queries = (*queries, federation_queries(build_schema().as_str()))
    return strawberry.Schema(
        query=merge_types("Query", queries),
        mutation=merge_types("Mutation", types.roots("Mutations")),
        subscription=merge_types("Subscription", types.roots("Subscriptions")),
        scalar_overrides={datetime: DATETIME},
        # @defer and @stream (schema/execution/incremental.py).
        config=StrawberryConfig(
            name_converter=RememberingNameConverter(), enable_experimental_incremental_execution=True
        ),
    )
