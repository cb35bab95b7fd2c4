"""The nouns of the API, one module each: its types, and the `Queries`, `Mutations` and
`Subscriptions` classes whose fields join the schema's root types (schema/__init__.py).

Adding a noun is adding a module here; nothing else lists them. A noun module refers to another
only through lazy type references (`Annotated[User, strawberry.lazy("schema.types.users")]`),
and never the other way round to the machinery around it.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

ROOTS = ("Queries", "Mutations", "Subscriptions")


def modules() -> list[ModuleType]:
    """Every noun module, in name order (the order their root fields print in the SDL)."""
    found = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return sorted(found, key=lambda module: module.__name__)


def roots(name: str) -> tuple[type, ...]:
    """The classes called `name` ("Queries", ...) of all noun modules."""
    return tuple(getattr(module, name) for module in modules() if hasattr(module, name))
