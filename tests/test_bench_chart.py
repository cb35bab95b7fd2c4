"""`make bench`'s chart (bench/chart.py): each server's bar, to its query's scale, per database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bench.chart import PANEL_HEIGHT, SERVERS, write_chart

pytestmark = pytest.mark.one_path  # no server runs: the resolver pass skips it


def _row(server: str, db: str, query: str, rps: float, errors: object = None) -> dict[str, object]:
    return {"server": server, "db": db, "query": query, "errors": errors, "load": {"rps": rps}}


def _colour(name: str) -> tuple[int, int, int]:
    hex_colour = SERVERS[name][0].lstrip("#")
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))
    return red, green, blue


def test_the_chart_draws_each_answered_row_and_skips_the_failed(tmp_path: Path) -> None:
    results = {
        "meta": {"time": "2026-12-02T12:00:00"},
        "results": [
            _row("quill", "pg", "Q1", 1000),
            _row("postgraphile", "pg", "Q1", 500),
            _row("quill", "sqlite", "Q3", 2000),
            _row("raw_limit", "sqlite", "Q3", 1000, errors=["wrong answer"]),  # not drawn
        ],
    }
    source = tmp_path / "bench.json"
    source.write_text(json.dumps(results))
    image = Image.open(write_chart(source, tmp_path / "bench.png")).convert("RGB")

    pixels = {colour: count for count, colour in image.getcolors(maxcolors=1 << 20) or []}
    assert _colour("postgraphile") in pixels
    assert _colour("raw_limit") not in pixels  # a row with errors has no bar (nor legend entry)
    # Quill's bars are the tallest of their queries: full height (a panel's, less its labels) in
    # both panels, at least 20 pixels wide; PostGraphile's is half of Quill's.
    full_bar = (PANEL_HEIGHT - 90) * 20
    assert pixels[_colour("quill")] > 2 * full_bar
    assert 0.4 < pixels[_colour("postgraphile")] / (pixels[_colour("quill")] / 2) < 0.6
