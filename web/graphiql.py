"""The GraphiQL page (GET /graphiql, and /graphql for a browser), working without internet.

`make install` installs GraphiQL, its Explorer plugin and React from the npm registry into
web/graphiql/node_modules when npm is available (web/graphiql/package.json pins them); the page
then loads them from
/graphiql/assets/ on this server. Without them it loads the same versions from the unpkg CDN,
checked by their subresource integrity hashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

GRAPHIQL_DIR = Path(__file__).resolve().parent / "graphiql"


@dataclass(frozen=True, slots=True)
class Asset:
    installed: str  # path under node_modules
    cdn: str
    integrity: str


ASSETS = {
    "react.js": Asset(
        "react/umd/react.production.min.js",
        "https://unpkg.com/react@18.2.0/umd/react.production.min.js",
        "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
    ),
    "react-dom.js": Asset(
        "react-dom/umd/react-dom.production.min.js",
        "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js",
        "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
    ),
    "graphiql.js": Asset(
        "graphiql/graphiql.min.js",
        "https://unpkg.com/graphiql@3.8.3/graphiql.min.js",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    ),
    # The Explorer: build a query by ticking fields (https://github.com/graphql/graphiql).
    "explorer.js": Asset(
        "@graphiql/plugin-explorer/dist/index.umd.js",
        "https://unpkg.com/@graphiql/plugin-explorer@3.2.5/dist/index.umd.js",
        "sha384-5p6hGdlOTvUy6Wf0GauxCz+xM9YB/YYvcGG+bf9msr2eyd+KVIxgRkepHgUijedJ",
    ),
    "explorer.css": Asset(
        "@graphiql/plugin-explorer/dist/style.css",
        "https://unpkg.com/@graphiql/plugin-explorer@3.2.5/dist/style.css",
        "sha384-YN9MumWidbWKuNj8VfH5ggrFvm9YqAoIOMnKYpeGL3dr7Eg1qnQ+SAqSthdNZCjz",
    ),
    "graphiql.css": Asset(
        "graphiql/graphiql.min.css",
        "https://unpkg.com/graphiql@3.8.3/graphiql.min.css",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
    ),
}

_PAGE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Quill · GraphiQL</title>
    <link rel="icon" href="data:,">
    <style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
    {css}
    {explorer_css}
    {react}
    {react_dom}
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    {graphiql}
    {explorer}
    <script src="/graphiql/assets/start.js"></script>
  </body>
</html>
"""


class GraphiQLPage:
    def __init__(self, modules: Path = GRAPHIQL_DIR / "node_modules") -> None:
        self.modules = modules
        self.offline = all((modules / asset.installed).is_file() for asset in ASSETS.values())
        self.html = _PAGE.format(
            css=self._tag("graphiql.css"),
            react=self._tag("react.js"),
            react_dom=self._tag("react-dom.js"),
            graphiql=self._tag("graphiql.js"),
            explorer_css=self._tag("explorer.css"),
            explorer=self._tag("explorer.js"),
        )

    def _tag(self, name: str) -> str:
        asset = ASSETS[name]
        if self.offline:
            url, extra = f"/graphiql/assets/{name}", ""
        else:
            url, extra = asset.cdn, f' integrity="{asset.integrity}" crossorigin="anonymous"'
        if name.endswith(".css"):
            return f'<link rel="stylesheet" href="{url}"{extra}>'
        return f'<script src="{url}"{extra}></script>'

    def headers(self) -> dict[str, str]:
        """The page may run only its own scripts (or the pinned CDN files), talk only to this
        server, and not be framed by another site (clickjacking)."""
        sources = "'self'" if self.offline else "'self' https://unpkg.com"
        policy = (
            f"default-src 'self'; script-src {sources}; style-src {sources} 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self' ws: wss:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        )
        return {
            "Content-Security-Policy": policy,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }

    async def page(self, request: Request) -> Response:
        return HTMLResponse(self.html, headers=self.headers())

    async def asgi_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The page as an ASGI app (the GraphQL endpoint serves it to a browser at /graphql)."""
        await HTMLResponse(self.html, headers=self.headers())(scope, receive, send)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "start.js":
            return FileResponse(GRAPHIQL_DIR / "start.js", media_type="text/javascript")
        asset = ASSETS.get(name)
        if asset is None or not self.offline:
            return PlainTextResponse("Not Found", 404)
        media_type = "text/css" if name.endswith(".css") else "text/javascript"
        # The file names do not change with the version; a day's caching is safe enough.
        headers = {"Cache-Control": "public, max-age=86400"}
        return FileResponse(self.modules / asset.installed, media_type=media_type, headers=headers)
