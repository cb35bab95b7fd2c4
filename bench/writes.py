"""Writes, and one server process against two (`make bench-writes`, after `make bench` loaded bench-m).

The shared harness sends one fixed body, which suits createPost (M1) but would make every
updatePost change the same row: 16 clients would queue on that row's lock and measure the disk's
commit latency, not the server. So this runs wrk itself, with a script that sends each request
for another row of bench-m (a superuser's token: it may edit any post and add notes to any task):

- M1 createPost (the harness's M1), M2 updatePost of a random post, M3 addNote to a random task,
  on PostgreSQL and SQLite, one uvicorn worker on one core, `wrk -t1 -c16` on the other;
- Q3 (the harness's flat page) and M1 with one uvicorn worker and then two, PostgreSQL, no core
  pinning: on this 2-core machine wrk and PostgreSQL share the cores with the server;
- growth: Q3, Q4 (a page deep in the list: after 3/4 of the posts) and M1 on bench-m (20,000
  posts) and on bench-m times 50 (1,000,000 posts, database `bench_l`, loaded by the harness's
  load_data.py --scale 50 the first time, about 3 minutes), in turns.

Prints a table and writes bench/results/writes.md. Traffic goes to 127.0.0.1 only; each run
stops by itself after `--duration` seconds.

    python bench/writes.py                  # everything, about 6 minutes
    python bench/writes.py --only writes    # M1-M3 only
    python bench/writes.py --only growth    # bench-m against a million posts
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    CREATE_POST,
    PG_BENCH,
    QUERIES,
    SECRET,
    SERVER_ENV,
    SQLITE_BENCH,
    SUPERUSER,
    WORK,
    _cursor_after,
    load,
)

RESULTS = ROOT / "bench" / "results"
PORT = 8171
UPDATE_POST = (
    "mutation ($id: ID!, $input: UpdatePostInput!) { updatePost(id: $id, input: $input) "
    "{ __typename ... on PostPayload { post { id title } } } }"
)
ADD_NOTE = (
    "mutation ($taskId: ID!, $input: AddNoteInput!) { addNote(taskId: $taskId, input: $input) "
    "{ __typename ... on NotePayload { note { id } } } }"
)
BODIES = 1000  # distinct request bodies per query, sent in turn


def global_id(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def bodies(query: str, ids: list[int]) -> list[dict[str, object]]:
    picked = [random.choice(ids) for _ in range(BODIES)]
    if query == "M1":
        return [
            {"query": CREATE_POST, "variables": {"input": {"title": "Benchmark post", "content": "By wrk."}}}
        ]
    if query == "M2":
        return [
            {
                "query": UPDATE_POST,
                "variables": {"id": global_id("Post", pk), "input": {"title": f"Edited {n}"}},
            }
            for n, pk in enumerate(picked)
        ]
    if query == "M3":
        return [
            {"query": ADD_NOTE, "variables": {"taskId": global_id("Task", pk), "input": {"body": "By wrk."}}}
            for pk in picked
        ]
    if query.startswith("Q4@"):  # Q3's page after the post at this position of the list
        after = _cursor_after(int(query.removeprefix("Q4@")))
        return [{"query": QUERIES["Q3"].replace("first: 100)", f'first: 100, after: "{after}")')}]
    return [{"query": QUERIES[query]}]


def lua_script(requests: list[dict[str, object]], token: str) -> str:
    """A wrk script that sends the bodies in turn."""
    quoted = ",\n".join("[==[" + json.dumps(body) + "]==]" for body in requests)
    return f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local bodies = {{ {quoted} }}
local n = 0
request = function()
  n = n % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[n])
end
"""


class Server:
    def __init__(
        self, database_url: str, workers: int, pin: str | None, env: dict[str, str] | None = None
    ) -> None:
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT), "server:app", "--host", "127.0.0.1",
                   "--port", str(PORT), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]  # fmt: skip
        if pin is not None:
            command = ["taskset", "-c", pin, *command]
        env = {**SERVER_ENV, **(env or {}), "DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def __enter__(self) -> Server:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.process.kill()
        sys.exit("the server did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def wrk(script: str, seconds: int, pin: str | None) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    command = [
        "wrk",
        "-t1",
        "-c16",
        f"-d{seconds}s",
        "--latency",
        "-s",
        file.name,
        f"http://127.0.0.1:{PORT}/graphql",
    ]
    if pin is not None:
        command = ["taskset", "-c", pin, *command]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(file.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "errors": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def ids_of(database_url: str, table: str) -> tuple[list[int], int]:
    """The ids of a table's rows, and the benchmark superuser's id."""
    email = SUPERUSER[0]
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            rows = [row[0] for row in conn.execute(f"SELECT id FROM {table}")]
            superuser = conn.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()[0]
        return rows, int(superuser)

    def psql(sql: str) -> str:
        return subprocess.run(
            ["psql", database_url, "-Atc", sql], capture_output=True, text=True, check=True
        ).stdout

    return [int(line) for line in psql(f"SELECT id FROM {table}").split()], int(
        psql(f"SELECT id FROM users WHERE email = '{email}'")
    )


def run(
    query: str, database_url: str, seconds: int, workers: int = 1, pinned: bool = True
) -> dict[str, float]:
    from schema.admission.tokens import AccessTokens

    table = {"M2": "posts", "M3": "tasks"}.get(query, "users")
    ids, superuser = ids_of(database_url, table)
    token, _ = AccessTokens(SECRET, timedelta(days=1)).issue(superuser, is_superuser=True)
    script = lua_script(bodies(query, ids), token)
    with Server(database_url, workers, "1" if pinned else None):
        wrk(script, 2, "0" if pinned else None)  # warm-up
        return wrk(script, seconds, "0" if pinned else None)


PG_LARGE = PG_BENCH.rsplit("/", 1)[0] + "/bench_l"
LARGE_SCALE = 50


def growth(seconds: int) -> list[str]:
    """Q3, a deep Q4 and M1 on bench-m and on 50 times bench-m, in turns (two rounds)."""
    count = subprocess.run(
        ["psql", PG_LARGE, "-Atc", "SELECT count(*) FROM posts"], capture_output=True, text=True
    )
    if count.returncode != 0 or int(count.stdout.strip() or 0) < 1_000_000:
        print("loading 50 x bench-m into bench_l (about 3 minutes)", flush=True)
        load(PG_LARGE, WORK / "venv" / "bin" / "python", scale=LARGE_SCALE)
    sizes = {
        "bench-m (20,000 posts)": (PG_BENCH, 15_000),
        "50 x bench-m (1,000,000 posts)": (PG_LARGE, 750_000),
    }
    runs: dict[tuple[str, str], list[float]] = {}
    for round_ in range(2):
        for name, (url, deep) in sizes.items() if round_ == 0 else reversed(sizes.items()):
            for query in ("Q3", f"Q4@{deep}", "M1"):
                runs.setdefault((name, query[:2]), []).append(run(query, url, seconds)["rps"])
                print(name, query, runs[name, query[:2]][-1], flush=True)
    lines = ["| PostgreSQL req/s (2 runs in turns) | Q3 first page | Q4 deep page | Q4/Q3 | M1 createPost |"]
    lines.append("|---|---:|---:|---:|---:|")
    for name in sizes:
        q3, q4, m1 = (sum(runs[name, query]) / 2 for query in ("Q3", "Q4", "M1"))
        lines.append(f"| {name} | {q3:.0f} | {q4:.0f} | {q4 / q3:.2f} | {m1:.0f} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["writes", "processes", "growth"])
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    sqlite_url = f"sqlite:///{SQLITE_BENCH}"
    if not SQLITE_BENCH.exists():
        sys.exit("run `make bench` first: it loads bench-m")
    lines = [
        f"# Writes, processes and growth ({datetime.now():%Y-%m-%d %H:%M}, {args.duration} s per run, wrk -t1 -c16)",
        "",
    ]
    if args.only in (None, "writes"):
        lines += ["| query | engine | req/s | p99 ms | non-2xx |", "|---|---|---:|---:|---:|"]
        for query in ("M1", "M2", "M3"):
            for engine, url in (("PostgreSQL", PG_BENCH), ("SQLite", sqlite_url)):
                row = run(query, url, args.duration)
                lines.append(
                    f"| {query} | {engine} | {row['rps']:.0f} | {row['p99_ms']:.1f} | {row['errors']:.0f} |"
                )
                print(lines[-1], flush=True)
        lines.append("")
    if args.only in (None, "processes"):
        lines += [
            "| query (PostgreSQL, no pinning) | 1 process req/s | 2 processes req/s | ratio |",
            "|---|---:|---:|---:|",
        ]
        for query in ("Q3", "M1"):
            one, two = (
                run(query, PG_BENCH, args.duration, workers, pinned=False)["rps"] for workers in (1, 2)
            )
            lines.append(f"| {query} | {one:.0f} | {two:.0f} | {two / one:.2f} |")
            print(lines[-1], flush=True)
        lines.append("")
    if args.only in (None, "growth"):
        lines += growth(args.duration)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("growth.md" if args.only == "growth" else "writes.md")).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
