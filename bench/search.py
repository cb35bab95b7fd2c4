"""Full-text search side by side with a hand-written server (`make bench-search`).

PostGraphile has no full-text plugin for v5 in the shared harness, so the reference is
bench/search_peer.py: one statement written by hand over the same index, the same JSON. Both
servers answer

    query ($q: String!, $first: Int!) { posts(search: $q, first: $first) { edges { node { id title } } } }

on bench-m (20,000 posts of a 40-word vocabulary, so a search matches thousands of posts and
ranking them is the work), one uvicorn worker on one core, `wrk -t1 -c16` on the other, in turns.
Their answers are compared first: a figure for a different answer would mean nothing.

The databases are the ones `make bench` loads (bench/run.py); this brings them to the current
migration first (migration 0010 indexes their posts). Prints a table and writes
bench/results/search.md. Traffic goes to 127.0.0.1 only; each run stops after `--duration` s.

    python bench/search.py               # about 2 minutes after `make bench`
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PG_BENCH, SECRET, SQLITE_BENCH  # noqa: E402
from bench.writes import PORT, Server, ids_of, wrk  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SEARCH = (
    "query ($q: String!, $first: Int!) { posts(search: $q, first: $first) { edges { node { id title } } } }"
)
SEARCHES = {  # what bench-m's posts hold: each word is in about 3 posts out of 4
    "S1 one word": "xray",
    "S2 four words": "graph query cursor loader",
}
FIRST = 20


class Peer(Server):
    """A hand-written server of bench/ (`bench.search_peer:app` by default), where the Quill server
    would be, on the same core."""

    def __init__(self, database_url: str, app: str = "bench.search_peer:app", **env: str) -> None:
        command = ["taskset", "-c", "1", sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT),
                   app, "--host", "127.0.0.1", "--port", str(PORT), "--log-level", "warning",
                   "--no-access-log"]  # fmt: skip
        env = {**env, "PEER_DB_URL": database_url, "PATH": "/usr/bin:/bin"}
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )


def script(body: dict[str, object], token: str) -> str:
    """wrk's script that POSTs `body` as the viewer of `token`."""
    return f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.body = [==[{json.dumps(body)}]==]
"""


def answer(body: dict[str, object], token: str) -> object:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(f"http://127.0.0.1:{PORT}/graphql", json=body, headers=headers, timeout=30).json()


def measure(
    server: Server, lua: str, body: dict[str, object], token: str, seconds: int
) -> tuple[float, object]:
    with server:
        seen = answer(body, token)
        wrk(lua, 2, "0")  # warm-up
        return wrk(lua, seconds, "0")["rps"], seen


def side_by_side(
    label: str, url: str, body: dict[str, object], token: str, seconds: int, peer: Server
) -> tuple[float, float]:
    """Quill's and the peer's requests per second for `body`, in turns, after checking that the
    two answers are the same (a figure for a different answer would mean nothing)."""
    lua = script(body, token)
    quill, quill_answer = measure(Server(url, 1, "1"), lua, body, token, seconds)
    theirs, peer_answer = measure(peer, lua, body, token, seconds)
    if quill_answer != peer_answer:
        sys.exit(f"{label}: the answers differ\nquill: {quill_answer}\npeer: {peer_answer}")
    return quill, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    if not SQLITE_BENCH.exists():
        sys.exit("run `make bench` first: it loads bench-m")
    from schema.admission.tokens import AccessTokens

    engines = {"PostgreSQL": PG_BENCH, "SQLite": f"sqlite:///{SQLITE_BENCH}"}
    lines = [
        f"# Search ({datetime.now():%Y-%m-%d %H:%M}, bench-m, {args.duration} s per run, wrk -t1 -c16, "
        f"first: {FIRST})",
        "",
        "| search | engine | Quill req/s | hand-written req/s | Quill / hand-written |",
        "|---|---|---:|---:|---:|",
    ]
    for engine, url in engines.items():
        migrate(url)
        _, superuser = ids_of(url, "users")
        token, _ = AccessTokens(SECRET, timedelta(days=1)).issue(superuser, is_superuser=True)
        for name, words in SEARCHES.items():
            body: dict[str, object] = {"query": SEARCH, "variables": {"q": words, "first": FIRST}}
            quill, peer = side_by_side(f"{engine} {name}", url, body, token, args.duration, Peer(url))
            lines.append(f"| {name} (`{words}`) | {engine} | {quill:.0f} | {peer:.0f} | {quill / peer:.2f} |")
            print(lines[-1], flush=True)
            time.sleep(1)
    lines.append("")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
