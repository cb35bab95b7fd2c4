"""Documents a request names instead of sending: Apollo's automatic persisted queries (APQ),
registered operations (OPERATIONS_MANIFEST), and the allow-list mode built on them.

APQ: a client first sends only the sha256 of its query (`extensions.persistedQuery.sha256Hash`,
and over GET a short URL a CDN can cache). An unknown hash is refused with
`PersistedQueryNotFound`; the client then sends hash and text together, which must match, and
the text is remembered once its document was admitted: in process (bounded by bytes), or in
Redis when REDIS_URL is set, so that every process knows a query any of them has seen.

A manifest is the file the client tooling writes:
- Apollo's persisted query manifest (`npx generate-persisted-query-manifest`):
  {"format": "apollo-persisted-query-manifest", "version": 1,
   "operations": [{"id": "...", "name": "Feed", "type": "query", "body": "query Feed { ... }"}]}
- Relay's persisted queries (`relay-compiler` with `persistConfig`): {"<id>": "query Feed { ... }"}.
A client may then send an operation's id (`documentId`, Relay's `doc_id`/`id`), its sha256 as
APQ, or its full text; with the manifest as an allow-list, nothing else runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from schema.lru import BytesLru

log = logging.getLogger("quill.persisted_queries")

_REDIS_PREFIX = "quill:apq:"
_REDIS_TTL_SECONDS = 7 * 24 * 3600


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class QueryStore(Protocol):
    async def get(self, sha256: str) -> str | None: ...
    async def put(self, sha256: str, query: str) -> None: ...
    async def close(self) -> None: ...


class LocalQueryStore:
    def __init__(self, max_bytes: int) -> None:
        self._texts: BytesLru[str] = BytesLru(max_bytes)

    async def get(self, sha256: str) -> str | None:
        return self._texts.get(sha256)

    async def put(self, sha256: str, query: str) -> None:
        self._texts.put(sha256, query, len(query) + 120)

    async def close(self) -> None:
        pass


class RedisQueryStore:
    """Shared by all server processes. If Redis is down, a lookup misses (the client then sends
    the full text, so requests still work) and the failure is logged."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    async def get(self, sha256: str) -> str | None:
        try:
            text = await self._redis.get(_REDIS_PREFIX + sha256)
        except (RedisError, OSError) as error:
            log.warning("persisted query lookup failed: %s", error)
            return None
        return text.decode() if isinstance(text, bytes) else text

    async def put(self, sha256: str, query: str) -> None:
        try:
            await self._redis.set(_REDIS_PREFIX + sha256, query, ex=_REDIS_TTL_SECONDS)
        except (RedisError, OSError) as error:
            log.warning("persisted query not stored: %s", error)

    async def close(self) -> None:
        await self._redis.aclose()


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


class PersistedMiss(Exception):
    """The request names a document this server cannot use; `code` and `status` say how it is refused."""

    def __init__(self, message: str, code: str | None, status: int) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


NOT_FOUND = "PersistedQueryNotFound"


class PersistedQueries:
    """Turns the persisted-query parts of a request into the query text to run."""

    def __init__(self, store: QueryStore | None, manifest: OperationManifest | None) -> None:
        self.store = store  # None: APQ switched off
        self.manifest = manifest

    async def resolve(
        self, query: str | None, document_id: str | None, extensions: dict[str, Any] | None
    ) -> tuple[str | None, str | None]:
        """The query text, and the hash to remember it under once it is admitted (if any).
        Raises PersistedMiss."""
        if document_id is not None and not query:
            return self._from_manifest(document_id), None
        extension = (extensions or {}).get("persistedQuery")
        if extension is None:
            return query, None
        sha256 = _hash_of(extension)
        if query:
            if sha256_hex(query) != sha256:
                raise PersistedMiss("provided sha does not match query", None, 400)
            return query, sha256
        if self.manifest is not None and (text := self.manifest.text_of(sha256)) is not None:
            return text, None
        if self.store is None:
            raise PersistedMiss("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED", 400)
        text = await self.store.get(sha256)
        if text is None:
            raise PersistedMiss(NOT_FOUND, "PERSISTED_QUERY_NOT_FOUND", 400)
        return text, None

    async def remember(self, sha256: str, query: str) -> None:
        if self.store is not None:
            await self.store.put(sha256, query)

    def _from_manifest(self, document_id: str) -> str:
        text = self.manifest.text_of(document_id) if self.manifest is not None else None
        if text is None:
            raise PersistedMiss(
                f"No registered operation has the id {document_id!r}.", "PERSISTED_QUERY_NOT_FOUND", 400
            )
        return text

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


def _hash_of(extension: Any) -> str:
    if not isinstance(extension, dict) or extension.get("version") != 1:
        raise PersistedMiss("Unsupported persisted query version (send version 1).", None, 400)
    sha256 = extension.get("sha256Hash")
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise PersistedMiss("persistedQuery.sha256Hash must be a sha256 in hex.", None, 400)
    return sha256.lower()
