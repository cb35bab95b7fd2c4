"""SQLite functions in C for compiled reads: quill_base64, quill_base64url and quill_timestamp.

db/sqlite_functions.c holds them; `pip install` builds it next to this file (pyproject.toml's
ext-modules, optional: where it cannot be built, the SQL spellings of schema/compiled/dialects.py
serve, with `b64` and `b64url` below as Python functions for what SQL cannot spell cheaply).

They are registered through SQLite's auto-extension hook, with the SQLite library that Python's
own sqlite3 module uses: every connection the process opens afterwards has them, whichever
driver opens it (sqlite3, aiosqlite). Python builds without extension loading are fine, since
nothing is loaded by SQL. Only one SQLite library may touch a database file in a process (two
would not see each other's locks), so no other library is loaded.
"""

from __future__ import annotations

import _sqlite3
import base64
import ctypes
import functools
import importlib.util
import logging
import sqlite3

log = logging.getLogger(__name__)

_ENTRY_POINT = "quill_sqlite_functions_init"

# What each function must print, checked once on a fresh connection before they are relied on.
_CHECKS = {
    "quill_base64('Post:42')": "UG9zdDo0Mg==",
    "quill_base64url('[\"ID:ASC\",[7]]')": "WyJJRDpBU0MiLFs3XV0",
    "quill_timestamp('2025-03-01 12:00:00.120000')": "2025-03-01T12:00:00.12+00:00",
    "quill_timestamp('2025-03-01 12:00:00')": "2025-03-01T12:00:00+00:00",
}

_kept: list[ctypes.CDLL] = []  # SQLite calls into the library for as long as the process runs


def library_path() -> str | None:
    """Where the built library is, or None when it was not built."""
    spec = importlib.util.find_spec("db._sqlite_functions")
    return spec.origin if spec is not None else None


@functools.cache
def available() -> bool:
    """Register the functions for every connection opened from now on; whether they work."""
    path = library_path()
    if path is None:
        log.info("db/sqlite_functions.c is not built: compiled reads spell its functions in SQL")
        return False
    try:
        library = ctypes.CDLL(path)
        entry_point = ctypes.cast(getattr(library, _ENTRY_POINT), ctypes.c_void_p)
        # Symbols looked up through the sqlite3 module resolve to the SQLite it was linked with.
        sqlite_library = ctypes.CDLL(_sqlite3.__file__)
        register, cancel = sqlite_library.sqlite3_auto_extension, sqlite_library.sqlite3_cancel_auto_extension
    except (OSError, AttributeError) as error:
        log.warning("SQLite functions in %s unusable (%s): compiled reads spell them in SQL", path, error)
        return False
    register.argtypes = cancel.argtypes = [ctypes.c_void_p]
    if register(entry_point) != 0:
        log.warning("SQLite refused the functions in %s: compiled reads spell them in SQL", path)
        return False
    _kept.append(library)
    if _check():
        return True
    cancel(entry_point)  # connections opened later need not carry functions nobody calls
    return False


def _check() -> bool:
    try:
        connection = sqlite3.connect(":memory:")
        try:
            printed = list(connection.execute(f"SELECT {', '.join(_CHECKS)}").fetchone())
        finally:
            connection.close()
    except sqlite3.Error as error:
        log.warning("SQLite functions unusable (%s): compiled reads spell them in SQL", error)
        return False
    if printed != list(_CHECKS.values()):
        log.warning("SQLite functions print %s, not %s: not used", printed, list(_CHECKS.values()))
        return False
    return True


def b64(text: str | None) -> str | None:
    """quill_b64 in Python: what schema/relay.py's to_global_id does to 'Type:pk'."""
    return None if text is None else base64.b64encode(text.encode()).decode()


def b64url(text: str | None) -> str | None:
    """quill_b64url in Python: what schema/relay.py's encode_cursor does to its JSON."""
    return None if text is None else base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
