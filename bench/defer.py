"""What @defer costs the first part: time to the first byte of a deferred query's first part,
against the same query whole and its initial fields alone (sequential requests, p50 of 200, three
rounds). Against a running server with the demo data, e.g. after `make run`:

    python bench/defer.py --url http://127.0.0.1:8000

The deferred fields (each post's comments and its author's posts) are the expensive half; the
first part should cost what the initial fields alone cost, not what the whole answer does. The
streamed page's first part comes from a statement that reads its first five edges (and the page's
pageInfo); it is compared with the whole answer and with a query for the first five alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

DEFERRED_FIELDS = (
    "comments(first: 10) { totalCount edges { node { body author { username } } } }"
    " author { posts(first: 10) { totalCount edges { node { title } } } }"
)
WHOLE = f"{{ posts(first: 50) {{ edges {{ node {{ title {DEFERRED_FIELDS} }} }} }} }}"
DEFERRED = f"{{ posts(first: 50) {{ edges {{ node {{ title ... @defer {{ {DEFERRED_FIELDS} }} }} }} }} }}"
INITIAL = "{ posts(first: 50) { edges { node { title } } } }"
# A stream of the same page: the compiled path reads its first 5 edges, then the rest of the page.
STREAMED = (
    f"{{ posts(first: 50) {{ edges @stream(initialCount: 5) {{ node {{ title {DEFERRED_FIELDS} }} }} }} }}"
)
FIRST_FIVE = f"{{ posts(first: 5) {{ edges {{ node {{ title {DEFERRED_FIELDS} }} }} }} }}"


async def timed(client: httpx.AsyncClient, query: str, parts: bool) -> tuple[float, float]:
    """(ms to the first bytes, ms to the end) of one request."""
    headers = {"Accept": "multipart/mixed"} if parts else {}
    started, first = time.perf_counter(), None
    async with client.stream("POST", "/graphql", json={"query": query}, headers=headers) as response:
        async for _ in response.aiter_bytes():
            first = first or time.perf_counter() - started
    return (first or 0) * 1000, (time.perf_counter() - started) * 1000


async def main(url: str, requests: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(20):  # warm up: plans made, connections open
            await timed(client, WHOLE, False)
            await timed(client, DEFERRED, True)
            await timed(client, INITIAL, False)
            await timed(client, STREAMED, True)
        for round_ in range(1, 4):
            rows: dict[str, list[float]] = {
                "whole": [],
                "@defer first part": [],
                "@defer last part": [],
                "initial fields alone": [],
                "@stream first part": [],
                "first five alone": [],
            }
            for _ in range(requests):
                rows["whole"].append((await timed(client, WHOLE, False))[1])
                first, last = await timed(client, DEFERRED, True)
                rows["@defer first part"].append(first)
                rows["@defer last part"].append(last)
                rows["initial fields alone"].append((await timed(client, INITIAL, False))[1])
                rows["@stream first part"].append((await timed(client, STREAMED, True))[0])
                rows["first five alone"].append((await timed(client, FIRST_FIVE, False))[1])
            print(
                f"round {round_}: "
                + ", ".join(f"{k} p50 {statistics.median(v):.2f} ms" for k, v in rows.items())
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.url, arguments.requests))
