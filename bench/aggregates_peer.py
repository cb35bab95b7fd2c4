"""A hand-written aggregates server: the reference Quill's `aggregate { groupBy }` is measured
against (bench/aggregates.py). No GraphQL: any POST to /graphql runs the statement written by
hand for the one query named by PEER_QUERY and returns the JSON Quill returns for it, so the two
answers can be compared before they are timed:

    A1  the top 50 authors by posts, each with their posts per month
        { posts { aggregate { groupBy(by: {author: true}, first: 50,
            orderBy: {field: COUNT, direction: DESC}) { count key { author { username
            posts { aggregate { groupBy(by: {datePosted: MONTH}) { key { datePosted } count } } } } } } } } }
    A2  posts per month
        { posts { aggregate { groupBy(by: {datePosted: MONTH}, first: 24) { key { datePosted } count } } } }

Ties are broken as Quill breaks them (by key, ascending). On SQLite the rows come back in one
statement and Python builds the JSON, the way one would write it by hand.

    PEER_DB_URL=postgresql://... PEER_QUERY=A1 uvicorn bench.aggregates_peer:app
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bench.peer_app import IS_PG, peer_app, state

QUERY = os.environ.get("PEER_QUERY", "A1")

PG_MONTH = "date_trunc('month', date_posted, 'UTC')"  # grouped by the instant, printed once per group
PG_PRINT = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')"""

PG = {
    "A1": f"""
WITH top AS (SELECT user_id, count(*) AS n FROM posts GROUP BY user_id ORDER BY n DESC, user_id LIMIT 50)
SELECT json_build_object('data', json_build_object('posts', json_build_object('aggregate',
  json_build_object('groupBy', coalesce((
    SELECT json_agg(json_build_object('count', top.n, 'key', json_build_object('author', json_build_object(
             'username', u.username,
             'posts', json_build_object('aggregate', json_build_object('groupBy', (
               SELECT json_agg(json_build_object('key', json_build_object('datePosted', {PG_PRINT.format("m.month")}), 'count', m.n)
                               ORDER BY m.month)
               FROM (SELECT {PG_MONTH} AS month, count(*) AS n FROM posts
                     WHERE posts.user_id = top.user_id GROUP BY month) AS m))))))
           ORDER BY top.n DESC, top.user_id)
    FROM top JOIN users AS u ON u.id = top.user_id), '[]'::json)))))::text
""",
    "A2": f"""
SELECT json_build_object('data', json_build_object('posts', json_build_object('aggregate',
  json_build_object('groupBy', coalesce((
    SELECT json_agg(json_build_object('key', json_build_object('datePosted', {PG_PRINT.format("g.month")}), 'count', g.n)
                    ORDER BY g.month)
    FROM (SELECT {PG_MONTH} AS month, count(*) AS n FROM posts GROUP BY month ORDER BY month LIMIT 24) AS g),
    '[]'::json)))))::text
""",
}

SQLITE_MONTH = "strftime('%Y-%m-01T00:00:00+00:00', p.date_posted)"
SQLITE = {
    "A1": f"""
WITH top AS (SELECT user_id, count(*) AS n FROM posts GROUP BY user_id ORDER BY n DESC, user_id LIMIT 50)
SELECT top.user_id, u.username, top.n, {SQLITE_MONTH} AS month, count(*)
FROM top JOIN users AS u ON u.id = top.user_id JOIN posts AS p ON p.user_id = top.user_id
GROUP BY top.user_id, month ORDER BY top.n DESC, top.user_id, month
""",
    "A2": f"SELECT {SQLITE_MONTH} AS month, count(*) FROM posts AS p GROUP BY month ORDER BY month LIMIT 24",
}


def _authors(rows: list[tuple[int, str, int, str, int]]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    last = None
    for user_id, username, count, month, posts in rows:
        if user_id != last:
            months: list[dict[str, Any]] = []
            author = {"username": username, "posts": {"aggregate": {"groupBy": months}}}
            groups.append({"count": count, "key": {"author": author}})
            last = user_id
        months.append({"key": {"datePosted": month}, "count": posts})
    return groups


async def answer(request: Request) -> Response:
    await request.body()
    if IS_PG:
        async with state["pool"].acquire() as conn:
            text = await conn.fetchval(PG[QUERY])
        return Response(text, media_type="application/json")
    rows = state["sqlite"].execute(SQLITE[QUERY]).fetchall()
    if QUERY == "A1":
        groups = _authors(rows)
    else:
        groups = [{"key": {"datePosted": month}, "count": count} for month, count in rows]
    body = {"data": {"posts": {"aggregate": {"groupBy": groups}}}}
    return Response(orjson.dumps(body), media_type="application/json")


app = peer_app(answer)
