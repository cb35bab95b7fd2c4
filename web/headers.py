"""A request's headers, read once: every transport and check asks by name (the Authorization
header, Accept, Content-Type, X-Forwarded-For, the trace context) rather than scanning the
scope's list of pairs again for each.
"""

from __future__ import annotations

from starlette.types import Scope

_HEADERS = "quill.headers"  # where a scope keeps them once read


def headers_of(scope: Scope) -> dict[bytes, str]:
    """An ASGI scope's headers by (lower-case) name, read once a request and kept in the scope:
    the last value of each, but every X-Forwarded-For joined (a proxy may add a header of its own
    instead of appending to one)."""
    found: dict[bytes, str] | None = scope.get(_HEADERS)
    if found is None:
        found = {}
        for name, value in scope["headers"]:
            text = value.decode("latin-1")
            if name == b"x-forwarded-for" and name in found:
                text = f"{found[name]}, {text}"
            found[name] = text
        scope[_HEADERS] = found
    return found
