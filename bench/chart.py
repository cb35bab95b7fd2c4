"""The benchmark as a picture: req/s per query, Quill beside each peer, one panel per database.

`make bench` writes results/bench.png from results/bench.json (bench/run.py); the README shows
it. Drawn with Pillow (already a dependency for avatars), so the chart needs nothing more.

    python -m bench.chart [results.json] [out.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = ("Q1", "Q2", "Q3", "Q4", "Q5", "M1")
DATABASES = {"pg": "PostgreSQL 15", "sqlite": "SQLite"}
# Each server's colour and label, in the order its bar stands within a query's group.
SERVERS = {
    "quill": ("#d6336c", "Quill"),
    "raw_limit": ("#495057", "hand-written SQL server"),
    "postgraphile": ("#1c7ed6", "PostGraphile v5"),
    "strawberry_mapper": ("#74b816", "Strawberry + mapper"),
    "strawberry_naive": ("#f59f00", "Strawberry, naive"),
    "graphene_sqlalchemy": ("#7048e8", "Graphene-SQLAlchemy"),
}
WIDTH, PANEL_HEIGHT, MARGIN, TOP = 1200, 340, 40, 100


def requests_per_second(results: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """(db, query, server) -> req/s, for the rows that were loaded and answered without error."""
    return {
        (row["db"], row["query"], row["server"]): row["load"]["rps"]
        for row in results
        if row.get("load") and row["load"].get("rps") and not row.get("errors")
    }


def draw(results: dict[str, Any]) -> Image.Image:
    rps = requests_per_second(results["results"])
    databases = [db for db in DATABASES if any(key[0] == db for key in rps)]
    servers = [name for name in SERVERS if any(key[2] == name for key in rps)]
    image = Image.new("RGB", (WIDTH, TOP + PANEL_HEIGHT * len(databases) + 30), "white")
    canvas = ImageDraw.Draw(image)
    title = "Requests per second, 16 connections, server on one core (higher is better; each query to its own scale)"
    canvas.text((MARGIN, 16), title, fill="black", font=_font(20))
    meta = results.get("meta", {})
    canvas.text(
        (MARGIN, 42), f"bench/results/bench.json, {meta.get('time', '')}", fill="#666", font=_font(13)
    )
    _legend(canvas, servers, y=62)
    for index, db in enumerate(databases):
        _panel(canvas, rps, db, servers, top=TOP + 20 + index * PANEL_HEIGHT)
    return image


def _panel(
    canvas: ImageDraw.ImageDraw, rps: dict[tuple[str, str, str], float], db: str, servers: list[str], top: int
) -> None:
    height = PANEL_HEIGHT - 80
    bottom = top + height
    queries = [query for query in QUERIES if any((db, query, server) in rps for server in servers)]
    canvas.text((MARGIN, top - 30), DATABASES[db], fill="black", font=_font(16))
    canvas.line((MARGIN, bottom, WIDTH - 20, bottom), fill="#999")
    group = (WIDTH - MARGIN - 40) / max(len(queries), 1)
    bar = (group - 16) / max(len(servers), 1)
    for q_index, query in enumerate(queries):
        # Each query on its own scale (Q5 answers ten times faster than Q1): the bars compare
        # the servers, the numbers give the rates.
        peak = max(rps.get((db, query, server), 0.0) for server in servers) or 1.0
        left = MARGIN + 10 + q_index * group
        canvas.text((left + group / 2 - 12, bottom + 6), query, fill="black", font=_font(14))
        for s_index, server in enumerate(servers):
            value = rps.get((db, query, server))
            if value is None:
                continue
            x0 = left + s_index * bar
            y0 = bottom - value / peak * height
            canvas.rectangle((x0, y0, x0 + bar - 3, bottom), fill=SERVERS[server][0])
            label = f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:,.0f}"
            canvas.text((x0, y0 - 14), label, fill="#333", font=_font(10))


def _legend(canvas: ImageDraw.ImageDraw, servers: list[str], y: int) -> None:
    x = MARGIN
    for server in servers:
        colour, label = SERVERS[server]
        canvas.rectangle((x, y + 2, x + 12, y + 14), fill=colour)
        canvas.text((x + 18, y), label, fill="black", font=_font(13))
        x += 30 + int(canvas.textlength(label, font=_font(13)))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: one size only
        return ImageFont.load_default()


def write_chart(results_path: Path, out: Path) -> Path:
    draw(json.loads(results_path.read_text())).save(out, optimize=True)
    return out


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "bench.json"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else RESULTS / "bench.png"
    print(write_chart(source, target))
