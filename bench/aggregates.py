"""Aggregates side by side with a hand-written server (`make bench-aggregates`).

PostGraphile's pg-aggregates plugin is not in the shared harness, so the reference is
bench/aggregates_peer.py: for each query, a statement written by hand that returns the same
JSON. Both servers answer, on bench-m (1,000 authors of 20 posts each, over two months):

    A1  the top 50 authors by posts, each with their posts per month (the issue's dashboard row)
    A2  posts per month, over the whole table

one uvicorn worker on one core, `wrk -t1 -c16` on the other, in turns. Their answers are
compared first: a figure for a different answer would mean nothing. Quill's `aggregate` is
priced (100 per aggregate, a groupBy like a page of its groups), so the run uses a superuser's
token, as bench/search.py does.

The databases are the ones `make bench` loads (bench/run.py), brought to the current migration
first. Prints a table and writes bench/results/aggregates.md. Traffic goes to 127.0.0.1 only;
each run stops after `--duration` s.

    python bench/aggregates.py               # about 2 minutes after `make bench`
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PG_BENCH, SECRET, SQLITE_BENCH  # noqa: E402
from bench.search import Peer, migrate, side_by_side  # noqa: E402
from bench.writes import ids_of  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MONTHLY = "groupBy(by: {datePosted: MONTH}) { key { datePosted } count }"
QUERIES = {
    "A1 top 50 authors, posts per month": (
        "{ posts { aggregate { groupBy(by: {author: true}, first: 50, orderBy: {field: COUNT, direction: DESC})"
        f" {{ count key {{ author {{ username posts {{ aggregate {{ {MONTHLY} }} }} }} }} }} }} }} }}"
    ),
    "A2 posts per month": (
        "{ posts { aggregate { groupBy(by: {datePosted: MONTH}, first: 24) { key { datePosted } count } } } }"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    if not SQLITE_BENCH.exists():
        sys.exit("run `make bench` first: it loads bench-m")
    from schema.admission.tokens import AccessTokens

    engines = {"PostgreSQL": PG_BENCH, "SQLite": f"sqlite:///{SQLITE_BENCH}"}
    lines = [
        f"# Aggregates ({datetime.now():%Y-%m-%d %H:%M}, bench-m, {args.duration} s per run, wrk -t1 -c16)",
        "",
        "| query | engine | Quill req/s | hand-written req/s | Quill / hand-written |",
        "|---|---|---:|---:|---:|",
    ]
    for engine, url in engines.items():
        migrate(url)
        _, superuser = ids_of(url, "users")
        token, _ = AccessTokens(SECRET, timedelta(days=1)).issue(superuser, is_superuser=True)
        for name, query in QUERIES.items():
            peer_server = Peer(url, "bench.aggregates_peer:app", PEER_QUERY=name.split()[0])
            body: dict[str, object] = {"query": query}
            quill, peer = side_by_side(f"{engine} {name}", url, body, token, args.duration, peer_server)
            lines.append(f"| {name} | {engine} | {quill:.0f} | {peer:.0f} | {quill / peer:.2f} |")
            print(lines[-1], flush=True)
            time.sleep(1)
    lines.append("")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "aggregates.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
