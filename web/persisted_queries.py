"""Automatic persisted queries (Apollo APQ) and persisted documents over HTTP.

A client first sends only the sha256 of its query (`extensions.persistedQuery.sha256Hash`, and
over GET a short URL a CDN can cache). The server answers `PersistedQueryNotFound` if it does not
know the hash yet; the client then sends hash and text together, the server checks that they match
and remembers the text once the document has passed validation. Texts are kept in process (least
recently used dropped first), or in Redis when REDIS_URL is set, so that every server process
knows a query that any of them has seen.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from schema.operations import OperationManifest, sha256_hex

log = logging.getLogger("quill.persisted_queries")

NOT_FOUND = {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
NOT_SUPPORTED = {
    "message": "PersistedQueryNotSupported",
    "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"},
}
_REDIS_PREFIX = "quill:apq:"
_REDIS_TTL_SECONDS = 7 * 24 * 3600


class QueryStore(Protocol):
    async def get(self, sha256: str) -> str | None: ...
    async def put(self, sha256: str, query: str) -> None: ...
    async def close(self) -> None: ...


class LocalQueryStore:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._texts: OrderedDict[str, str] = OrderedDict()

    async def get(self, sha256: str) -> str | None:
        text = self._texts.get(sha256)
        if text is not None:
            self._texts.move_to_end(sha256)
        return text

    async def put(self, sha256: str, query: str) -> None:
        self._texts[sha256] = query
        self._texts.move_to_end(sha256)
        while len(self._texts) > self.max_entries:
            self._texts.popitem(last=False)

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


class PersistedQueryError(Exception):
    """The request names a persisted query that cannot be used; `error` is the GraphQL error."""

    def __init__(self, error: dict[str, Any], status: int = 200) -> None:
        super().__init__(error["message"])
        self.error, self.status = error, status


class PersistedQueries:
    """Turns the persisted-query parts of a request into the query text to run."""

    def __init__(self, store: QueryStore | None, manifest: OperationManifest | None) -> None:
        self.store = store  # None: APQ switched off
        self.manifest = manifest

    async def resolve(self, payload: dict[str, Any]) -> tuple[str | None, str | None]:
        """The query text, and the hash to remember it under once it validates (if any)."""
        query = payload.get("query")
        document_id = next((payload[k] for k in ("documentId", "doc_id", "id") if payload.get(k)), None)
        if document_id is not None and not query:
            return self._from_manifest(str(document_id)), None
        extension = (payload.get("extensions") or {}).get("persistedQuery")
        if extension is None:
            return query, None
        sha256 = self._hash_of(extension)
        if isinstance(query, str) and query:
            if sha256_hex(query) != sha256:
                raise PersistedQueryError({"message": "provided sha does not match query"}, 400)
            return query, sha256
        if self.manifest is not None and (text := self.manifest.text_of(sha256)) is not None:
            return text, None
        if self.store is None:
            raise PersistedQueryError(NOT_SUPPORTED)
        text = await self.store.get(sha256)
        if text is None:
            raise PersistedQueryError(NOT_FOUND)
        return text, None

    async def remember(self, sha256: str, query: str) -> None:
        if self.store is not None:
            await self.store.put(sha256, query)

    def _from_manifest(self, document_id: str) -> str:
        text = self.manifest.text_of(document_id) if self.manifest is not None else None
        if text is None:
            raise PersistedQueryError(
                {
                    "message": f"No registered operation has the id {document_id!r}.",
                    "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
                }
            )
        return text

    @staticmethod
    def _hash_of(extension: Any) -> str:
        if not isinstance(extension, dict) or extension.get("version") != 1:
            raise PersistedQueryError(
                {"message": "Unsupported persisted query version (send version 1)."}, 400
            )
        sha256 = extension.get("sha256Hash")
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise PersistedQueryError({"message": "persistedQuery.sha256Hash must be a sha256 in hex."}, 400)
        return sha256.lower()
