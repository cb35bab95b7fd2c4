"""Benchmark this server side by side with the peers of ../shared/bench (`make bench`).

The shared harness (run_bench.py, the peer servers, load_data.py) is used as it is, from a
working copy under .bench/ (the shared folder is read-only and the harness writes next to
itself). This script only prepares what the harness needs and adds this server as a target:

1. tools: wrk, the peers' virtualenvs, PostGraphile's node packages (all under .bench/);
2. data: the bench-m data set loaded into this server's own migrated schema (alembic upgrade
   head, then load_data.py --into-existing), on PostgreSQL (database `bench`) and on SQLite,
   plus a superuser from the seed command (tasks are private: Q2 reads as a superuser);
3. a query file with the canonical texts and a superuser's token, and two targets (SQLite and
   PostgreSQL, one uvicorn worker each);
4. the harness run, then results/bench.{md,json}, the ratios the performance issue set
   (results/ratios.md) and the chart the README shows (results/bench.png, bench/chart.py).

    python bench/run.py                          # everything, ~15 minutes
    python bench/run.py --only quill --db pg      # this server only, on PostgreSQL
    python bench/run.py --db pg --compare 19f6d3d   # against an older commit, in turns (compare.md)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
WORK = ROOT / ".bench"
HARNESS = WORK / "harness"
RESULTS = ROOT / "bench" / "results"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH = "postgresql://postgres@127.0.0.1:5432/bench"
SQLITE_BENCH = HARNESS / "data" / "bench.db"  # where the harness's targets.json says
SECRET = "bench-secret-" + "b" * 40
SUPERUSER = ("bench-root@example.com", "bench-root-password")
COMPARE_ROUNDS = 3  # --compare: each target runs each query this many times, in turns (--rounds)
PYTHON_PEERS = ("strawberry_naive", "strawberry_mapper", "graphene_sqlalchemy")
QUERIES = {
    "Q1": "{ users(first: 50) { edges { node { username posts(first: 10) { edges { node { title datePosted author { username } } } } } } } }",
    "Q1_u10": "{ users(first: 10) { edges { node { username posts(first: 10) { edges { node { title datePosted author { username } } } } } } } }",
    "Q2": "{ tasks(first: 100, filter: {status: OPEN}) { edges { node { title status owner { username } notes(first: 5) { edges { node { body } } } } } } }",
    "Q3": "{ posts(first: 100) { edges { node { id title content datePosted } } pageInfo { endCursor hasNextPage } } }",
    "Q5": '{ user(username: "user42") { username posts(first: 3) { edges { node { title } } } } }',
}
# One wrk client would spend the rate limit at once: the benchmark measures throughput. Every
# peer runs without an access log (uvicorn --no-access-log); our access log is the request line
# at INFO, so the level is WARNING here (`make breakdown` measures what the line costs).
SERVER_ENV = {
    "SECRET_KEY": SECRET,
    "APP_ENV": "production",
    "STATS_ENDPOINT": "1",
    "RATE_LIMIT": "0",
    "LOG_LEVEL": "WARNING",
    "METRICS": "0",  # production refuses /metrics without METRICS_TOKEN; wrk does not scrape it
}
CREATE_POST = "mutation ($input: CreatePostInput!) { createPost(input: $input) { __typename ... on PostPayload { post { id } } } }"


def run(*command: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def prepare_tools() -> tuple[Path, Path]:
    if shutil.which("wrk") is None:
        run("apt-get", "install", "-y", "wrk")
    shutil.copytree(
        SHARED, HARNESS, dirs_exist_ok=True, ignore=shutil.ignore_patterns("node_modules", "results")
    )
    for path in HARNESS.rglob("*"):  # the shared copy is read-only; the harness writes beside it
        path.chmod(path.stat().st_mode | 0o200)
    (HARNESS / "results").mkdir(exist_ok=True)
    merged = HARNESS / "results" / "bench.json"
    if not merged.exists() and (RESULTS / "bench.json").exists():
        # A subset run (--only/--db/--queries) merges into the last full run's figures.
        shutil.copy(RESULTS / "bench.json", merged)
    peers, graphene = WORK / "venv", WORK / "venv-graphene"
    if not (peers / "bin" / "python").exists():
        run(sys.executable, "-m", "venv", peers)
        run(peers / "bin" / "pip", "install", "-q", "strawberry-graphql", "strawberry-sqlalchemy-mapper", "starlette",
            "uvicorn[standard]", "sqlalchemy[asyncio]>=2", "aiosqlite", "asyncpg", "psycopg2-binary", "orjson")  # fmt: skip
    if not (graphene / "bin" / "python").exists():
        run(sys.executable, "-m", "venv", graphene)
        run(graphene / "bin" / "pip", "install", "-q", "--pre", "graphene-sqlalchemy", "starlette",
            "uvicorn[standard]", "sqlalchemy[asyncio]>=2", "aiosqlite", "asyncpg", "psycopg2-binary", "orjson")  # fmt: skip
    postgraphile = HARNESS / "peers" / "postgraphile"
    if not (postgraphile / "node_modules").exists():
        run("npm", "install", "--no-audit", "--no-fund", cwd=postgraphile)
    return peers / "bin" / "python", graphene / "bin" / "python"


def load(url: str, bench_python: Path, code: Path = ROOT, scale: int = 1) -> int:
    """bench-m (times `scale`) in the schema `code` migrates to (this server's, or an older
    commit's work tree), plus a superuser; returns the superuser's id."""
    sqlite_file = HARNESS / url.removeprefix("sqlite:///") if url.startswith("sqlite") else None
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{sqlite_file}"
    else:
        name = url.rsplit("/", 1)[1]
        run("psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        run("psql", PG_ADMIN, "-qc", f"CREATE DATABASE {name}")
    env = {"DATABASE_URL": url}
    run(sys.executable, "-m", "alembic", "upgrade", "head", env=env, cwd=code)
    run(bench_python, "load_data.py", "--into-existing", url, "--scale", str(scale), cwd=HARNESS)
    email, password = SUPERUSER
    run(
        sys.executable,
        "-m",
        "db.seed",
        env={**env, "FIRST_SUPERUSER_EMAIL": email, "FIRST_SUPERUSER_PASSWORD": password},
        cwd=code,
    )
    query = f"SELECT id FROM users WHERE email = '{email}'"
    if sqlite_file is not None:
        import sqlite3

        with sqlite3.connect(sqlite_file) as conn:
            return int(conn.execute(query).fetchone()[0])
    return int(run("psql", url, "-Atc", query).strip())


def checkout(rev: str) -> Path:
    """A work tree of an older commit (under .bench/), to run as a second target of the same run;
    it shares this virtualenv, and uvicorn's --app-dir puts its code first on the path."""
    sha = run("git", "rev-parse", "--short", rev).strip()
    tree = WORK / f"quill-{sha}"
    if not tree.exists():
        run("git", "worktree", "add", "--detach", tree, sha)
    return tree


def compared_name(tree: Path) -> str:
    """The older commit's target name: quill_<sha>."""
    return f"quill_{tree.name.removeprefix('quill-')}"


def compared_databases(tree: Path) -> dict[str, str]:
    """An older commit's own databases: its server refuses a schema migrated past its own head."""
    sha = tree.name.removeprefix("quill-")
    return {"pg": f"{PG_BENCH}_{sha}", "sqlite": f"sqlite:///data/bench-{sha}.db"}


def write_targets(superuser_id: int, compare: Path | None = None) -> Path:
    sys.path.insert(0, str(ROOT))
    from schema.admission.tokens import AccessTokens

    token, _ = AccessTokens(SECRET, timedelta(days=2)).issue(superuser_id, is_superuser=True)
    headers = {"Authorization": f"Bearer {token}"}
    queries = {name: {"query": text, "headers": headers} for name, text in QUERIES.items()}
    queries["Q4"] = {
        "query": QUERIES["Q3"].replace("first: 100)", f'first: 100, after: "{_cursor_after(15000)}")'),
        "headers": headers,
    }
    queries["M1"] = {
        "query": CREATE_POST,
        "variables": {"input": {"title": "Benchmark post", "content": "Written by wrk."}},
        "headers": headers,
    }
    (HARNESS / "queries" / "quill.json").write_text(json.dumps(queries, indent=1))
    config = json.loads((SHARED / "targets.json").read_text())
    start = (
        f"{sys.executable} -m uvicorn --app-dir {ROOT} server:app --host 127.0.0.1 --port {{port}} "
        "--workers 1 --log-level warning --no-access-log"
    )
    env = SERVER_ENV
    builds: list[tuple[str, Path, int, dict[str, str]]] = [("quill", ROOT, 8151, {})]
    if compare is not None:
        builds.append((compared_name(compare), compare, 8161, compared_databases(compare)))
    for name, app_dir, first_port, databases in builds:
        for db, port in (("sqlite", first_port), ("pg", first_port + 1)):
            target = {
                "name": name,
                "db": db,
                "port": port,
                "url": "http://127.0.0.1:{port}/graphql",
                "queries": "queries/quill.json",
                "start": start.replace(f"--app-dir {ROOT} ", f"--app-dir {app_dir} "),
                "env": env,
            }
            if db in databases:
                target["db_url"] = databases[db]
            config["targets"].append(target)
    path = HARNESS / "targets-with-quill.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def _cursor_after(post_id: int) -> str:
    from db.pagination import Order
    from schema.relay import encode_cursor

    return encode_cursor(Order("ID"), (post_id,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="targets, e.g. quill,graphene_sqlalchemy (default: all)")
    parser.add_argument("--db", choices=["sqlite", "pg"])
    parser.add_argument("--queries", help="e.g. Q1,Q3")
    parser.add_argument("--duration", default="10")
    parser.add_argument("--no-load", action="store_true", help="only check answers and count statements")
    parser.add_argument("--compare", metavar="REV", help="also run this commit's server, as quill_<sha>")
    parser.add_argument(
        "--rounds", type=int, default=COMPARE_ROUNDS, help="--compare: runs of each, in turns"
    )
    args = parser.parse_args()
    bench_python, graphene_python = prepare_tools()
    tree = checkout(args.compare) if args.compare else None
    # A comparison runs on one database (PostgreSQL unless --db says); a run on both, or --db's.
    wanted = [args.db or "pg"] if tree is not None else [args.db] if args.db else ["pg", "sqlite"]
    databases = {"pg": PG_BENCH, "sqlite": f"sqlite:///{SQLITE_BENCH.relative_to(HARNESS)}"}
    superuser_ids = [load(databases[db], bench_python) for db in wanted]
    if tree is not None:
        superuser_ids += [load(compared_databases(tree)[db], bench_python, tree) for db in wanted]
    assert len(set(superuser_ids)) == 1, superuser_ids  # one token serves every target
    targets = write_targets(superuser_ids[0], tree)
    command = [str(bench_python), "run_bench.py", "--targets", str(targets), "--duration", args.duration,
               "--pg-log", os.environ.get("PG_LOG", "/var/log/postgresql/postgresql-15-main.log")]  # fmt: skip
    env = {**os.environ, "BENCH_PY": str(bench_python), "BENCH_PY_GRAPHENE": str(graphene_python)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    if tree is not None:
        queries = (args.queries or "Q1,Q2,Q3,Q4,Q5").split(",")
        print(compare(command, env, ("quill", compared_name(tree)), queries, wanted[0], args.rounds))
        return
    command += ["--out", "results/bench"]
    for flag, value in (("--only", args.only), ("--db", args.db), ("--queries", args.queries)):
        if value:
            command += [flag, value]
    if args.no_load:
        command.append("--no-load")
    subprocess.run(command, cwd=HARNESS, env=env, check=True)
    for suffix in (".md", ".json"):
        shutil.copy(HARNESS / "results" / f"bench{suffix}", RESULTS / f"bench{suffix}")
    from bench.chart import write_chart
    from bench.ratios import write_ratios

    print(write_ratios(RESULTS / "bench.json", RESULTS / "ratios.md"))
    print(f"chart: {write_chart(RESULTS / 'bench.json', RESULTS / 'bench.png')}")


def compare(
    command: list[str],
    env: dict[str, str],
    names: tuple[str, str],
    queries: list[str],
    db: str,
    rounds: int = COMPARE_ROUNDS,
) -> str:
    """This commit against an older one, query by query, in turns (A B, then B A, `rounds` times):
    this machine's speed drifts by a fifth within minutes, which one target after the other
    would count as a difference. Writes results/compare.md; returns its text."""
    runs: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds):
        for query in queries:
            for name in names if round_ % 2 == 0 else names[::-1]:
                out = HARNESS / "results" / f"compare-{name}-{query}"
                out.with_suffix(".json").unlink(missing_ok=True)
                step = ["--only", name, "--db", db, "--queries", query, "--out", str(out)]
                subprocess.run([*command, *step], cwd=HARNESS, env=env, check=True)
                [row] = json.loads(out.with_suffix(".json").read_text())["results"]
                runs.setdefault((name, query), []).append(row["load"]["rps"])
    ours, older = names
    lines = [
        f"# {ours} against {older} ({db}, requests per second, median of {rounds} runs in turns)",
        "",
        f"| query | {ours} | {older} | ratio | {ours} runs | {older} runs |",
        "|---|---:|---:|---:|---|---|",
    ]
    for query in queries:
        a, b = (statistics.median(runs[name, query]) for name in names)
        each = (" ".join(f"{rps:.0f}" for rps in runs[name, query]) for name in names)
        lines.append(f"| {query} | {a:.0f} | {b:.0f} | {a / b:.2f} | {' | '.join(each)} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "compare.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
