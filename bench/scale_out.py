"""Reads on a streaming replica against the primary, and PgBouncer against direct connections,
side by side in one run (`make bench-scale-out`, after `make bench`).

The test rigs make the pieces (tests/replica_rig.py: a primary and a streaming replica of its
own; tests/pgbouncer_rig.py: PgBouncer in transaction mode in front of that primary), and the
bench-m data `make bench` loaded into the `bench` database is copied into the rig's primary
(pg_dump | pg_restore) and replayed on the replica. Three ways to run the same server, one
uvicorn worker on core 1 and `wrk -t1 -c16` on core 0, in turns, each query's answers compared
first:

- `primary`: DATABASE_URL is the primary, no replicas;
- `replica`: the same, with DATABASE_REPLICA_URLS naming the replica (queries read it; M1 reads
  the primary's WAL position after each write, for read-your-writes);
- `pgbouncer`: DATABASE_URL is PgBouncer's (pool of 20), DATABASE_POOLER=transaction.

All three PostgreSQL servers share this machine's two cores and disk with the server and wrk,
so the replica here shows what routing costs, not what a replica on its own machine adds.
Writes bench/results/scale_out.md. Traffic goes to 127.0.0.1 only; each run stops by itself.

    python bench/scale_out.py --duration 5 --rounds 2     # about 6 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import CREATE_POST, PG_BENCH, QUERIES, SECRET, _cursor_after  # noqa: E402
from bench.search import answer, script  # noqa: E402
from bench.writes import Server, ids_of, wrk  # noqa: E402
from tests.pgbouncer_rig import pgbouncer  # noqa: E402
from tests.replica_rig import ReplicaRig, replica_rig  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONFIGS = ("primary", "replica", "pgbouncer")


def copy_bench_data(rig: ReplicaRig) -> None:
    rig.primary.run("CREATE DATABASE bench")
    dump = subprocess.Popen(["pg_dump", "-Fc", PG_BENCH], stdout=subprocess.PIPE)
    subprocess.run(
        ["pg_restore", "--no-owner", "-d", rig.primary.url("bench")], stdin=dump.stdout, check=True
    )
    if dump.wait() != 0:
        sys.exit(f"pg_dump of {PG_BENCH} failed: run `make bench` first, it loads bench-m")
    rig.primary.run("ANALYZE", "bench")
    asyncio.run(rig.wait_replayed(within=120))


def bodies() -> dict[str, dict[str, object]]:
    queries: dict[str, dict[str, object]] = {
        name: {"query": QUERIES[name]} for name in ("Q1", "Q2", "Q3", "Q5")
    }
    after = _cursor_after(15000)
    queries["Q4"] = {"query": QUERIES["Q3"].replace("first: 100)", f'first: 100, after: "{after}")')}
    queries["M1"] = {"query": CREATE_POST, "variables": {"input": {"title": "Bench", "content": "By wrk."}}}
    return dict(sorted(queries.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--queries", help="e.g. M1,Q5 (default: all)")
    args = parser.parse_args()
    from schema.admission.tokens import AccessTokens

    _, superuser = ids_of(PG_BENCH, "users")
    token, _ = AccessTokens(SECRET, timedelta(days=1)).issue(superuser, is_superuser=True)
    with replica_rig() as rig:
        copy_bench_data(rig)
        with pgbouncer(rig.primary.url("bench"), pool_size=20) as bouncer:
            servers = {
                "primary": (rig.primary.url("bench"), {}),
                "replica": (rig.primary.url("bench"), {"DATABASE_REPLICA_URLS": rig.replica.url("bench")}),
                "pgbouncer": (bouncer.url("bench"), {"DATABASE_POOLER": "transaction"}),
            }
            queries = bodies()
            if args.queries:
                queries = {name: queries[name] for name in args.queries.split(",")}
            runs = measure(servers, queries, token, args.duration, args.rounds)
    text = table(runs, args.duration, args.rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale_out.md").write_text(text)
    print(text)


def measure(
    servers: dict[str, tuple[str, dict[str, str]]],
    queries: dict[str, dict[str, object]],
    token: str,
    seconds: int,
    rounds: int,
) -> dict[tuple[str, str], list[float]]:
    runs: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds):
        for name, body in queries.items():
            lua, seen = script(body, token), {}
            order = CONFIGS if round_ % 2 == 0 else CONFIGS[::-1]
            for config in order:
                url, env = servers[config]
                with Server(url, 1, "1", env):
                    seen[config] = answer(body, token)
                    wrk(lua, 1, "0")  # warm-up
                    result = wrk(lua, seconds, "0")
                if result["errors"]:
                    sys.exit(f"{config} {name}: {result['errors']:.0f} requests failed")
                runs.setdefault((config, name), []).append(result["rps"])
                print(f"round {round_ + 1} {name} {config}: {result['rps']:.0f} req/s", flush=True)
                time.sleep(0.5)
            if name != "M1" and len({repr(answer) for answer in seen.values()}) != 1:
                sys.exit(f"{name}: the answers differ: {seen}")
    return runs


def table(runs: dict[tuple[str, str], list[float]], seconds: int, rounds: int) -> str:
    names = sorted({name for _, name in runs})
    lines = [
        f"# Scale-out pieces ({datetime.now():%Y-%m-%d %H:%M}, bench-m, median of {rounds} runs of "
        f"{seconds} s in turns, wrk -t1 -c16, one worker)",
        "",
        "| query | primary req/s | reads on the replica | replica / primary | through PgBouncer | "
        "PgBouncer / direct |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        primary, replica, bouncer = (statistics.median(runs[config, name]) for config in CONFIGS)
        lines.append(
            f"| {name} | {primary:.0f} | {replica:.0f} | {replica / primary:.2f} | {bouncer:.0f} | "
            f"{bouncer / primary:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
