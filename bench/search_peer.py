"""A hand-written search server: the reference Quill's `posts(search:)` is measured against
(bench/search.py). No GraphQL: any POST to /graphql with {"variables": {"q": ..., "first": n}}
runs one statement written by hand over the same index and returns the JSON Quill returns for

    query ($q: String!, $first: Int!) { posts(search: $q, first: $first) { edges { node { id title } } } }

so the two answers can be compared byte for byte before they are timed. The rank is the one
db/search.py defines (so both order ties alike); on SQLite this server joins the FTS5 table, the
way one would write it by hand for this one query.

    PEER_DB_URL=postgresql://... uvicorn bench.search_peer:app
"""

from __future__ import annotations

import base64

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bench.peer_app import IS_PG, peer_app, state

PG_SEARCH = """
SELECT json_build_object('data', json_build_object('posts', json_build_object('edges', coalesce(
  (SELECT json_agg(
            json_build_object('node', json_build_object(
              'id', encode(convert_to('Post:' || p.id, 'UTF8'), 'base64'), 'title', p.title))
            ORDER BY p.rank DESC, p.id DESC)
   FROM (SELECT id, title,
                CAST(ts_rank(search_vector, plainto_tsquery('english', $1), 1) * 1000000000 AS BIGINT) AS rank
         FROM posts WHERE search_vector @@ plainto_tsquery('english', $1)
         ORDER BY rank DESC, id DESC LIMIT $2) AS p),
  '[]'::json))))::text
"""

SQLITE_SEARCH = """
SELECT p.id, p.title FROM posts_search JOIN posts AS p ON p.id = posts_search.rowid
WHERE posts_search MATCH ?
ORDER BY CAST(ROUND(-bm25(posts_search, 4.0, 1.0) * 1000000000) AS INTEGER) DESC, p.id DESC LIMIT ?
"""


def _phrases(text: str) -> str:
    return " ".join(f'"{word}"' for word in text.split())


async def search(request: Request) -> Response:
    variables = orjson.loads(await request.body())["variables"]
    words, first = " ".join(variables["q"].lower().split()), int(variables["first"])
    if IS_PG:
        async with state["pool"].acquire() as conn:
            text = await conn.fetchval(PG_SEARCH, words, first)
        return Response(text, media_type="application/json")
    rows = state["sqlite"].execute(SQLITE_SEARCH, (_phrases(words), first)).fetchall()
    edges = [
        {"node": {"id": base64.b64encode(f"Post:{pk}".encode()).decode(), "title": title}}
        for pk, title in rows
    ]
    return Response(orjson.dumps({"data": {"posts": {"edges": edges}}}), media_type="application/json")


app = peer_app(search)
