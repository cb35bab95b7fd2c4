"""The SQL that prints values in compiled reads prints them exactly as the Python path does.

The differential tests (test_compiled_reads.py) compare whole answers on realistic data; these
check the printing expressions themselves over many values, edge cases included, on SQLite
(in memory), PostgreSQL and MariaDB. On SQLite in both spellings: with db/sqlite_functions.c's functions
(native) and in SQL alone, which serves where that library is not built.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import asyncmy
import asyncpg
import orjson
import pytest
from sqlalchemy import DateTime, Integer, Text, bindparam, cast, column, select, table
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import make_url

from db import sqlite_functions
from db.pagination import encode_keyset_value
from db.sqlite_functions import b64, b64url
from db.timestamps import utc_text
from schema.compiled.dialects import MariaDBJson, PostgresJson, SqliteJson
from tests.conftest import PostgresServer

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)

IDS = sorted(
    {*range(0, 2000), *(10**k + d for k in range(3, 19) for d in (-1, 0, 1, 4321 % 10**k)), 2**63 - 1}
)
TYPE_NAMES = ["Post", "User", "Task", "Note", "A", "Ab", "Abc", "LongerTypeName"]
MOMENTS = [
    datetime(2025, 3, 1, 12, 0, tzinfo=UTC) + timedelta(microseconds=micros, seconds=seconds)
    for micros in (0, 1, 10, 100_000, 120_000, 123_456, 999_999, 500_000)
    for seconds in (0, 59, 3600 * 13)
] + [datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)]
TEXTS = [None, "", "a", "ab", "abc", "abcd", '["ID:ASC",[1]]', "ünïcødé ✓", "🙂" * 5, "x" * 1000, "a\x00b"]


def _require_native_functions() -> None:
    if not sqlite_functions.available():
        message = "db/sqlite_functions.c is not built (pip install builds it with gcc and sqlite3ext.h)"
        if os.environ.get("REQUIRE_SQLITE_FUNCTIONS") == "1":
            pytest.fail(message + " (REQUIRE_SQLITE_FUNCTIONS=1)")
        pytest.skip(message)


@pytest.fixture(params=[False, True], ids=["sql", "native"])
def sqlite_json(request: pytest.FixtureRequest) -> SqliteJson:
    if request.param:
        _require_native_functions()
    return SqliteJson(native=request.param)


def _sqlite() -> sqlite3.Connection:
    sqlite_functions.available()  # the native functions, on connections opened from now on
    connection = sqlite3.connect(":memory:")
    connection.create_function("quill_b64", 1, b64, deterministic=True)
    connection.create_function("quill_b64url", 1, b64url, deterministic=True)
    return connection


@pytest.mark.parametrize("type_name", TYPE_NAMES)
def test_sqlite_global_ids_are_base64_of_type_and_id(type_name: str, sqlite_json: SqliteJson) -> None:
    connection = _sqlite()
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    connection.executemany("INSERT INTO t VALUES (?)", [(pk,) for pk in IDS])
    ids = table("t", column("id", Integer))
    statement = select(ids.c.id, sqlite_json.global_id(type_name, ids.c.id))
    sql = str(statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    printed = dict(connection.execute(sql).fetchall())
    assert len(printed) == len(IDS)
    for pk, text in printed.items():
        assert text == base64.b64encode(f"{type_name}:{pk}".encode()).decode(), pk


@pytest.mark.parametrize(
    "stored",
    [
        "%Y-%m-%d %H:%M:%S.%f",  # what SQLAlchemy writes
        "%Y-%m-%d %H:%M:%S",  # what a hand-written INSERT may hold
    ],
)
def test_sqlite_timestamps_print_as_the_api_does(stored: str, sqlite_json: SqliteJson) -> None:
    connection = _sqlite()
    connection.execute("CREATE TABLE t (at TEXT)")
    moments = [m for m in MOMENTS if m.microsecond == 0] if "%f" not in stored else MOMENTS
    connection.executemany("INSERT INTO t VALUES (?)", [(m.strftime(stored),) for m in moments])
    rows = table("t", column("at", DateTime))
    sql = str(select(sqlite_json.datetime(rows.c.at)).compile(dialect=sqlite.dialect()))
    assert [text for (text,) in connection.execute(sql)] == [utc_text(m) for m in moments]


def test_sqlite_timestamps_print_alike_in_both_spellings_whatever_the_text() -> None:
    """quill_timestamp is SqliteJson.datetime's SQL in C, for texts no timestamp column holds too."""
    _require_native_functions()
    connection = _sqlite()
    connection.execute("CREATE TABLE t (at)")
    odd = ["", "0", "2025-03-01", "2025-03-01 12:00:00.", "2025-03-01 12:00:00.000", "2025-03-01 12:00:10",
           "2025-03-01 12:00:00.10.0", "2025-03-01  12:00:00.000000", "2025-03-01 12:00:00.120000 ", "ü" * 10 + "0",
           "ü" * 19 + "0", "2025-03-01T12:00:00.5", 20250301, 1.5, None]  # fmt: skip
    connection.executemany("INSERT INTO t VALUES (?)", [(value,) for value in odd])
    at = table("t", column("at", DateTime)).c.at
    in_sql, native = (
        str(select(json.datetime(at)).compile(dialect=sqlite.dialect()))
        for json in (SqliteJson(native=False), SqliteJson(native=True))
    )
    assert connection.execute(native).fetchall() == connection.execute(in_sql).fetchall()


def test_sqlite_base64_prints_as_python_does(sqlite_json: SqliteJson) -> None:
    connection = _sqlite()
    for url, expected in ((False, b64), (True, b64url)):
        statement = select(sqlite_json.base64(bindparam("text", type_=Text), url=url))
        sql = str(statement.compile(dialect=sqlite.dialect()))
        for text in TEXTS:
            assert connection.execute(sql, (text,)).fetchone() == (expected(text),), (url, text)


async def test_postgres_timestamps_and_ids_print_as_the_api_does(postgres_server: PostgresServer) -> None:
    """In the UTC session the compiled reads run in (db/read_connections.py)."""
    url = postgres_server.admin_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url, server_settings={"TimeZone": "UTC"})
    json = PostgresJson()
    rows = table("t", column("at", DateTime(timezone=True)), column("id", Integer))
    printed = json.object([("at", json.datetime(rows.c.at)), ("id", json.global_id("Post", rows.c.id))])
    sql = str(
        select(cast(printed, Text))
        .order_by(rows.c.id)
        .compile(dialect=make_url("postgresql+asyncpg://").get_dialect()())
    )
    try:
        await connection.execute("CREATE TEMPORARY TABLE t (at timestamptz, id integer)")
        await connection.executemany("INSERT INTO t VALUES ($1, $2)", [(m, i) for i, m in enumerate(MOMENTS)])
        texts = [row[0] for row in await connection.fetch(sql)]
    finally:
        await connection.close()
    assert texts == [
        f'{{"at" : "{utc_text(m)}", "id" : "{base64.b64encode(f"Post:{i}".encode()).decode()}"}}'
        for i, m in enumerate(MOMENTS)
    ]


async def test_mariadb_timestamps_ids_and_cursors_print_as_the_api_does(mariadb_database: str) -> None:
    """Timestamps as DATETIME(6) in naive UTC (db/models.py), IDs, and cursors over keys that
    need escaping: the cursor is base64 of JSON text, so its bytes must be orjson's."""
    url = make_url(mariadb_database)
    connection = await asyncmy.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
        charset="utf8mb4",
    )
    json, dialect = MariaDBJson(), mysql.dialect(paramstyle="format")
    rows = table("t", column("at", DateTime()), column("id", Integer), column("key", Text))
    printed_row = json.object(
        [
            ("at", json.datetime(rows.c.at)),
            ("id", json.global_id("Post", rows.c.id)),
            ("atCursor", json.cursor("AT:ASC", rows.c.at, "datetime", rows.c.id)),
            ("keyCursor", json.cursor("KEY:ASC", rows.c.key, "text", rows.c.id)),
            ("key64", json.base64(rows.c.key, url=False)),
        ]
    )
    statement = select(json.document(printed_row)).order_by(rows.c.id)  # as a response is built
    controls = "".join(chr(code) for code in range(1, 32)) + "\x7f"
    keys = [text for text in TEXTS if text is not None] + ['q"\\/', controls, "%s", "a\\u001F"]
    values = [(m.replace(tzinfo=None), i, keys[i % len(keys)]) for i, m in enumerate(MOMENTS)]
    try:
        async with connection.cursor() as cursor:
            await cursor.execute("CREATE TEMPORARY TABLE t (at DATETIME(6), id BIGINT, `key` TEXT)")
            await cursor.executemany("INSERT INTO t VALUES (%s, %s, %s)", values)
            await cursor.execute(str(statement.compile(dialect=dialect)), ())
            printed = [orjson.loads(row[0])["data"] for row in await cursor.fetchall()]
    finally:
        connection.close()

    def expected_cursor(token: str, key: object, pk: int) -> str:
        payload = orjson.dumps([token, [encode_keyset_value(key), pk]])
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")

    moments = MOMENTS
    assert printed == [
        {
            "at": utc_text(moments[i]),
            "id": base64.b64encode(f"Post:{i}".encode()).decode(),
            "atCursor": expected_cursor("AT:ASC", moments[i], i),
            "keyCursor": expected_cursor("KEY:ASC", key, i),
            "key64": base64.b64encode(key.encode()).decode(),
        }
        for _, i, key in values
    ]
