"""The GraphQL schema: every root field, assembled from the feature modules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from schema.accounts import AccountMutations
from schema.avatars import AvatarMutations
from schema.compiled_reads import CompiledReads, CompiledReadsExtension
from schema.execution import FastPathExecutor
from schema.extensions import CachedDocuments, DocumentCache, MaskUnexpectedErrors, OperationScope
from schema.limits import CostLimit
from schema.names import RememberingNameConverter
from schema.nodes import NodeQueries
from schema.notes import NoteMutations
from schema.operations import AllowList, OperationManifest
from schema.posts import PostMutations, PostQueries
from schema.subscriptions import Subscription
from schema.tasks import TaskMutations, TaskQueries
from schema.telemetry import OperationTelemetry
from schema.time import DATETIME
from schema.users import UserQueries
from settings import Settings

Query = merge_types("Query", (NodeQueries, UserQueries, PostQueries, TaskQueries))
Mutation = merge_types(
    "Mutation", (AccountMutations, AvatarMutations, PostMutations, TaskMutations, NoteMutations)
)


def _introspection(ignore: IgnoreContext) -> bool:
    """GraphiQL's introspection query nests deeper than any data query needs to."""
    return ignore.field_name.startswith("__")


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Strawberry logs every error with a stack trace; MaskUnexpectedErrors logs the bugs only."""


def build_schema(
    cache: DocumentCache,
    settings: Settings,
    tracing: Sequence[Any] = (),
    allow_list: OperationManifest | None = None,
    compiled: CompiledReads | None = None,
) -> Schema:
    """`tracing`: extensions that trace whole operations (web/tracing.py), when tracing is on;
    `allow_list`: the only operations that may run (allow-list mode), when one is configured."""
    # Order matters: telemetry and tracing measure everything after them; the allow-list refuses
    # before any work; the scope builds each operation's context; the token limit must be set
    # before parsing; the document cache goes last so that it caches only what validation said.
    extensions: list[Any] = [
        OperationTelemetry,
        *tracing,
        *([lambda: AllowList(allow_list)] if allow_list is not None else []),
        OperationScope,
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth, should_ignore=_introspection),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        *([] if settings.introspection else [DisableIntrospection]),
        lambda: CostLimit(settings.max_query_nodes),
        lambda: CachedDocuments(cache),
        MaskUnexpectedErrors,
        # Last: it answers in on_execute only after everything above has agreed to run the query.
        *([lambda: CompiledReadsExtension(compiled)] if compiled is not None else []),
    ]
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=FastPathExecutor,
        scalar_overrides={datetime: DATETIME},
        config=StrawberryConfig(name_converter=RememberingNameConverter()),
    )
