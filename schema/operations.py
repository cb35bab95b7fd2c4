"""Registered operations: the allow-list mode (OPERATIONS_MANIFEST), in which the server runs only
the operations a build of the frontend registered, over HTTP and WebSocket alike.

A manifest is the file the client tooling writes:
- Apollo's persisted query manifest (`npx generate-persisted-query-manifest`):
  {"format": "apollo-persisted-query-manifest", "version": 1,
   "operations": [{"id": "...", "name": "Feed", "type": "query", "body": "query Feed { ... }"}]}
- Relay's persisted queries (`relay-compiler` with `persistConfig`): {"<id>": "query Feed { ... }"}.

A client may then send only an operation's id (`documentId`, Relay's `doc_id`/`id`) or its
sha256 (Apollo's `extensions.persistedQuery`); sending the full text of a registered operation
also works. Anything else is refused before it runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ManifestError(ValueError):
    """The manifest file cannot be read as either format; the message says where it went wrong."""


@dataclass(frozen=True, slots=True)
class OperationManifest:
    texts: dict[str, str]  # id or sha256 -> document text

    @classmethod
    def load(cls, path: str | Path) -> OperationManifest:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise ManifestError(f"OPERATIONS_MANIFEST {path} cannot be read: {error}") from None
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: Any, source: str = "manifest") -> OperationManifest:
        if isinstance(raw, dict) and raw.get("format") == "apollo-persisted-query-manifest":
            operations = raw.get("operations")
            if not isinstance(operations, list) or not all(
                isinstance(op, dict) and isinstance(op.get("id"), str) and isinstance(op.get("body"), str)
                for op in operations
            ):
                raise ManifestError(f"{source}: each operation needs a string id and body")
            by_id = {op["id"]: op["body"] for op in operations}
        elif isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
            by_id = dict(raw)  # Relay: id -> text
        else:
            raise ManifestError(
                f"{source} is neither an Apollo persisted query manifest nor Relay's {{id: text}}"
            )
        return cls({**{sha256_hex(text): text for text in by_id.values()}, **by_id})

    def text_of(self, key: str) -> str | None:
        return self.texts.get(key)

    def allows(self, query: str) -> bool:
        return self.texts.get(sha256_hex(query)) == query

    def __len__(self) -> int:
        return len(set(self.texts.values()))


class NotInAllowList(GraphQLError):
    def __init__(self) -> None:
        super().__init__(
            "This server runs only registered operations, and this is not one of them.",
            extensions={"code": "OPERATION_NOT_IN_ALLOW_LIST"},
        )


class AllowList(SchemaExtension):
    """Refuses, before it runs, any document that is not in the manifest. (At execution, not
    earlier: that is where Strawberry turns a refusal into an error for a subscription too.)"""

    def __init__(self, manifest: OperationManifest) -> None:
        self.manifest = manifest

    def on_execute(self) -> Iterator[None]:
        query = self.execution_context.query
        if query is not None and not self.manifest.allows(query):
            raise NotInAllowList
        yield
