"""The ratios the performance issue set, from a harness results file (results/bench.json)."""

from __future__ import annotations

import json
from pathlib import Path

PYTHON_PEERS = ("strawberry_naive", "strawberry_mapper", "graphene_sqlalchemy")
OURS = "quill"


def _rps(results: list[dict], server: str, db: str, query: str) -> float | None:  # type: ignore[type-arg]
    for row in results:
        if (row["server"], row["db"], row["query"]) == (server, db, query):
            return row.get("load", {}).get("rps")
    return None


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}" if ours and theirs else "n/a"


def ratios(results: list[dict], db: str) -> list[tuple[str, str, str, str]]:  # type: ignore[type-arg]
    """(what, target, measured, met?) rows for one database."""
    rows = []

    def check(what: str, target: str, value: str, met: bool | None) -> None:
        rows.append((what, target, value, "n/a" if met is None else ("yes" if met else "NO")))

    ours_q1 = _rps(results, OURS, db, "Q1")
    for peer, target in (("graphene_sqlalchemy", 2.0), ("strawberry_naive", 3.0)):
        value = _ratio(ours_q1, _rps(results, peer, db, "Q1"))
        check(f"Q1 vs {peer}", f">= {target}", value, None if value == "n/a" else float(value) >= target)
    for query in ("Q2", "Q3", "Q5"):
        peers = {peer: _rps(results, peer, db, query) for peer in PYTHON_PEERS}
        best = max(((rps, peer) for peer, rps in peers.items() if rps), default=(None, "none"))
        value = _ratio(_rps(results, OURS, db, query), best[0])
        check(
            f"{query} vs best Python peer ({best[1]})",
            ">= 1.5",
            value,
            None if value == "n/a" else float(value) >= 1.5,
        )
    q3, q4 = _rps(results, OURS, db, "Q3"), _rps(results, OURS, db, "Q4")
    cost = f"{q3 / q4:.2f}" if q3 and q4 else "n/a"
    check(
        "Q4/Q3 cost (deep page / first page)", "<= 1.1", cost, None if cost == "n/a" else float(cost) <= 1.1
    )
    # Performance II (compiled reads): PostGraphile (PostgreSQL only) and the hand-written SQL server.
    for query in ("Q1", "Q2", "Q3", "Q4", "Q5"):
        ours = _rps(results, OURS, db, query)
        for peer, target in (("postgraphile", 1.0), ("raw_limit", 0.8)):
            if db == "sqlite" and peer == "postgraphile":
                continue
            value = _ratio(ours, _rps(results, peer, db, query))
            check(
                f"{query} vs {peer}",
                f">= {target}",
                value,
                None if value == "n/a" else float(value) >= target,
            )
    return rows


def write_ratios_rows(results: list[dict], db: str) -> list[tuple[str, str, str, str]]:  # type: ignore[type-arg]
    """The writes issue's targets: M1 (createPost) against the peers, and SQLite's p99."""
    rows = []
    ours = _rps(results, OURS, db, "M1")
    for peer, target in (("postgraphile", 1.5), ("raw_limit", 0.8)):
        if db == "sqlite" and peer == "postgraphile":
            continue
        value = _ratio(ours, _rps(results, peer, db, "M1"))
        met = "n/a" if value == "n/a" else ("yes" if float(value) >= target else "NO")
        rows.append((f"M1 vs {peer}", f">= {target}", value, met))
    if db == "sqlite":
        p99 = next(
            (row["load"]["p99_us"] / 1000 for row in results
             if (row["server"], row["db"], row["query"]) == (OURS, db, "M1") and row.get("load")),
            None,
        )  # fmt: skip
        met = "n/a" if p99 is None else ("yes" if p99 < 100 else "NO")
        rows.append(("M1 p99 at 16 connections (ms)", "< 100", "n/a" if p99 is None else f"{p99:.1f}", met))
    return rows


def write_ratios(results_path: Path, out: Path) -> str:
    document = json.loads(results_path.read_text())
    lines = [f"# Ratios ({document['meta']['time']})", ""]
    for db in ("pg", "sqlite"):
        lines += [f"## {db}", "", "| what | target | measured | met |", "|---|---|---:|---|"]
        lines += [
            f"| {what} | {target} | {value} | {met} |"
            for what, target, value, met in ratios(document["results"], db)
            + write_ratios_rows(document["results"], db)
        ]
        lines.append("")
    text = "\n".join(lines)
    out.write_text(text)
    return text
