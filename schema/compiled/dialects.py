"""The JSON-building SQL of each engine, written to print values exactly as the Python path does.

PostgreSQL has json_build_object/json_agg; SQLite has json_object/json_group_array; MariaDB
(10.5 or later, for JSON_ARRAYAGG with ORDER BY) has JSON_OBJECT/JSON_ARRAYAGG. Beyond the names
they differ where it matters for equal answers:
- SQLite has no booleans: a boolean becomes JSON through json('true'/'false').
- SQLite keeps a value's JSON-ness only through expressions and scalar subqueries, not through a
  FROM subquery's columns, so objects are built in the select that aggregates them.
- SQLite before 3.44 cannot order inside an aggregate: the rows come from a subquery already in
  page order (which SQLite keeps for json_group_array); PostgreSQL orders in the aggregate.
- SQLite has no base64 and no way to print a timestamp in one call: db/sqlite_functions.c adds
  quill_base64, quill_base64url and quill_timestamp. Where that library is not built, SqliteJson
  spells them in SQL (and calls back into Python, quill_b64/quill_b64url of
  db/sqlite_functions.py, registered by db/read_connections.py, for what SQL cannot spell
  cheaply). tests/test_json_sql.py holds both spellings to the Python path's output.

- MariaDB refuses a derived table that reads an outer query's row, which is how the others take a
  nested page's rows (`FROM (SELECT ... WHERE t1.user_id = p0.id LIMIT n)`); schema/compiled/sql.py
  bounds those nested pages another way (`correlates_derived_tables`; a root list reads no outer
  row, so it takes a derived table here too). Its JSON text has spaces after
  `:` and `,`, which the client does not see but a cursor would: cursors are built with CONCAT.
  Its booleans are numbers unless they come from a comparison or TRUE/FALSE, and a JSON value
  stays JSON only through JSON functions and subqueries (COALESCE with a non-JSON value makes
  it a string).

Timestamps print as db/timestamps.py says. PostgreSQL's JSON of a timestamptz is that text in a
session whose TimeZone is UTC, which every connection that runs these statements is
(db/read_connections.py). IDs and cursors match schema/relay.py byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    FromClause,
    Integer,
    LargeBinary,
    String,
    Text,
    case,
    cast,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement as ColumnElementBase

from db import sqlite_functions

MAX_OBJECT_KEYS = 50  # PostgreSQL functions take at most 100 arguments


def constant(value: str) -> ColumnElement[str]:
    """A string constant written into the SQL (keys, type names, orderings: never client input)."""
    assert "'" not in value, value
    assert "\\" not in value, value
    return literal_column(f"'{value}'", Text)


# How a cursor prints its sort key: as orjson prints the value the resolvers read.
KeyKind = Literal["text", "datetime", "number"]


class JsonSql:
    """One engine's way of building JSON; `for_dialect` picks it."""

    name = "generic"
    object_function = "json_build_object"
    array_function = "json_build_array"
    # Whether an aggregate takes its rows in the order its FROM subquery gives them (no ORDER BY).
    orders_by_source = False
    # Whether a subquery in FROM may read a row of the query around it (not on MariaDB).
    correlates_derived_tables = True

    @staticmethod
    def for_dialect(dialect: str) -> JsonSql:
        if dialect == "postgresql":
            return PostgresJson()
        if dialect == "sqlite":
            return SqliteJson(native=sqlite_functions.available())
        if dialect == "mysql":
            return MariaDBJson()
        raise NotImplementedError(dialect)

    def object(self, pairs: Sequence[tuple[str, ColumnElement[Any]]]) -> ColumnElement[Any]:
        arguments: list[ColumnElement[Any]] = []
        for key, value in pairs:
            arguments += [constant(key), value]
        return getattr(func, self.object_function)(*arguments)

    def array(
        self, item: ColumnElement[Any], order: Sequence[ColumnElement[Any]], anchor: ColumnElement[Any] | None
    ) -> ColumnElement[Any]:
        """The JSON array of `item` over the rows, in `order`; `[]` for no rows. `anchor`: a
        column of those rows, when `item` reads none (see SqliteJson)."""
        raise NotImplementedError

    def array_of(self, items: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
        """A JSON array of a known number of values."""
        return getattr(func, self.array_function)(*items)

    def aggregate(self, item: ColumnElement[Any]) -> ColumnElement[Any]:
        """The JSON array of `item` over the rows, in no particular order."""
        raise NotImplementedError

    def viewer_list(self, ids: BindParameter[Any]) -> tuple[Any, ColumnElement[int]]:
        """A FROM item of one row per viewer id in `ids` (a parameter: encode it with
        `viewer_ids`), and its id column."""
        raise NotImplementedError

    def viewer_ids(self, ids: Sequence[int]) -> Any:
        return orjson.dumps(list(ids)).decode()

    def boolean(self, condition: ColumnElement[Any]) -> ColumnElement[Any]:
        raise NotImplementedError

    def truth(self, value: bool) -> ColumnElement[Any]:
        raise NotImplementedError

    def null(self) -> ColumnElement[Any]:
        raise NotImplementedError

    def marker(self, escaped: str) -> ColumnElement[Any]:
        """A JSON string whose text (escapes included) is `escaped`."""
        raise NotImplementedError

    def datetime(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        raise NotImplementedError

    def base64(self, text: ColumnElement[str], *, url: bool) -> ColumnElement[str]:
        raise NotImplementedError

    def document(self, data: ColumnElement[Any]) -> ColumnElement[bytes]:
        """The response body `{"data":...}` as UTF-8 bytes, which the server sends as they are."""
        raise NotImplementedError

    def global_id(self, type_name: str, pk: ColumnElement[int]) -> ColumnElement[str]:
        return self.base64(constant(f"{type_name}:") + cast(pk, String), url=False)

    def cursor(
        self, token: str, key: ColumnElement[Any] | None, key_kind: KeyKind, pk: ColumnElement[int]
    ) -> ColumnElement[str]:
        """schema/relay.py's encode_cursor: base64url of `["TOKEN",[key,id]]` (or `[id]`)."""
        raise NotImplementedError


class PostgresJson(JsonSql):
    name = "postgresql"

    def array(
        self, item: ColumnElement[Any], order: Sequence[ColumnElement[Any]], anchor: ColumnElement[Any] | None
    ) -> ColumnElement[Any]:
        # `order` reads the rows, which makes the aggregate theirs whatever `item` reads.
        return func.coalesce(func.json_agg(aggregate_order_by(item, *order)), literal_column("'[]'::json"))

    def aggregate(self, item: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.coalesce(func.json_agg(item), literal_column("'[]'::json"))

    def viewer_list(self, ids: BindParameter[Any]) -> tuple[Any, ColumnElement[int]]:
        viewers = func.unnest(cast(ids, ARRAY(Integer))).table_valued("id").render_derived(name="v")
        return viewers, viewers.c.id

    def viewer_ids(self, ids: Sequence[int]) -> Any:
        return list(ids)

    def boolean(self, condition: ColumnElement[Any]) -> ColumnElement[Any]:
        return condition

    def truth(self, value: bool) -> ColumnElement[Any]:
        return literal_column("true" if value else "false")

    def null(self) -> ColumnElement[Any]:
        return literal_column("NULL::json")

    def marker(self, escaped: str) -> ColumnElement[Any]:
        return literal_column(f"'\"{escaped}\"'::json")

    def datetime(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return column  # PostgreSQL's own JSON of it, in a UTC session (see the module doc)

    def base64(self, text: ColumnElement[str], *, url: bool) -> ColumnElement[str]:
        encoded = func.encode(func.convert_to(text, constant("UTF8")), constant("base64"))
        if not url:  # global IDs are far shorter than the 76 characters where encode() breaks lines
            return encoded
        return func.rtrim(func.translate(encoded, literal_column("E'+/\\n'"), constant("-_")), constant("="))

    def document(self, data: ColumnElement[Any]) -> ColumnElement[bytes]:
        body = constant('{"data":').op("||")(cast(data, Text)).op("||")(constant("}"))
        return func.convert_to(body, constant("UTF8"), type_=LargeBinary)

    def cursor(
        self, token: str, key: ColumnElement[Any] | None, key_kind: KeyKind, pk: ColumnElement[int]
    ) -> ColumnElement[str]:
        text = constant(f'["{token}",[')
        if key is not None:
            key_text = cast(key, Text)
            if key_kind != "number":
                key_text = cast(func.to_json(key if key_kind == "datetime" else key_text), Text)
            text = text.op("||")(key_text).op("||")(constant(","))
        text = text.op("||")(cast(pk, String)).op("||")(constant("]]"))
        return self.base64(text, url=True)


class SqliteJson(JsonSql):
    name = "sqlite"
    object_function = "json_object"
    array_function = "json_array"
    orders_by_source = True

    def __init__(self, *, native: bool) -> None:
        self.native = native  # whether db/sqlite_functions.c's functions are there (module doc)

    def array(
        self, item: ColumnElement[Any], order: Sequence[ColumnElement[Any]], anchor: ColumnElement[Any] | None
    ) -> ColumnElement[Any]:
        if anchor is not None:
            # An aggregate whose argument reads only an outer query's row (edges of nothing but
            # `owner { ... }`, the parent's row) belongs to that query; make it read these rows.
            item = func.coalesce(item, anchor)
        return func.json_group_array(item)  # rows arrive in order (see the module doc)

    def aggregate(self, item: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.json_group_array(item)

    def viewer_list(self, ids: BindParameter[Any]) -> tuple[Any, ColumnElement[int]]:
        viewers = func.json_each(ids).table_valued("value").alias("v")
        return viewers, viewers.c.value

    def boolean(self, condition: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.json(case((condition, constant("true")), else_=constant("false")))

    def truth(self, value: bool) -> ColumnElement[Any]:
        return func.json(constant("true" if value else "false"))

    def null(self) -> ColumnElement[Any]:
        return literal_column("NULL")

    def marker(self, escaped: str) -> ColumnElement[Any]:
        return func.json(literal_column(f"'\"{escaped}\"'", Text))

    def datetime(self, column: ColumnElement[Any]) -> ColumnElement[str]:
        if self.native:
            return func.quill_timestamp(column, type_=Text)
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's SQLite format), UTC: the fraction
        # loses its trailing zeros, then its dot (a value stored without one keeps its seconds).
        without_zeros = func.rtrim(func.rtrim(column, constant("0")), constant("."))
        trimmed = case((func.length(column) > literal_column("19"), without_zeros), else_=column)
        return func.replace(trimmed, constant(" "), constant("T")).op("||")(constant("+00:00"))

    def base64(self, text: ColumnElement[str], *, url: bool) -> ColumnElement[str]:
        if self.native:
            return func.quill_base64url(text, type_=Text) if url else func.quill_base64(text, type_=Text)
        return func.quill_b64url(text) if url else func.quill_b64(text)

    def global_id(self, type_name: str, pk: ColumnElement[int]) -> ColumnElement[str]:
        if self.native:
            return super().global_id(type_name, pk)
        # Spelled out in SQL for ids of up to ten digits: calling back into Python costs more
        # than the arithmetic (see _base64_of_prefixed_number).
        prefix = f"{type_name}:"
        fallback = func.quill_b64(constant(prefix).op("||")(cast(pk, Text)))
        whens: list[tuple[ColumnElement[bool], ColumnElement[str]]] = [(pk < literal_column("0"), fallback)]
        for digits in range(1, _SPELLED_OUT_DIGITS + 1):
            spelled_out = _base64_of_prefixed_number(prefix, pk, digits)
            whens.append((pk < literal_column(str(10**digits)), spelled_out))
        return case(*whens, else_=fallback)

    def document(self, data: ColumnElement[Any]) -> ColumnElement[bytes]:
        return cast(constant('{"data":').op("||")(data).op("||")(constant("}")), LargeBinary)

    def cursor(
        self, token: str, key: ColumnElement[Any] | None, key_kind: KeyKind, pk: ColumnElement[int]
    ) -> ColumnElement[str]:
        # json_array prints like orjson: no spaces, strings escaped alike.
        values = [pk] if key is None else [self.datetime(key) if key_kind == "datetime" else key, pk]
        return self.base64(func.json_array(constant(token), func.json_array(*values)), url=True)


class MariaDBJson(JsonSql):
    name = "mysql"
    object_function = "json_object"
    array_function = "json_array"
    correlates_derived_tables = False

    def array(
        self, item: ColumnElement[Any], order: Sequence[ColumnElement[Any]], anchor: ColumnElement[Any] | None
    ) -> ColumnElement[Any]:
        # An aggregate whose argument reads only outer rows belongs to the outer query, as on
        # SQLite; but COALESCE(json, id) would be a string here, so the anchor goes into a JSON
        # function that ignores it: the first of a two-element array.
        if anchor is not None:
            item = func.json_extract(func.json_array(item, anchor), literal_column("'$[0]'"))
        return func.coalesce(_OrderedArrayAgg(item, order), func.json_array())

    def aggregate(self, item: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.coalesce(func.json_arrayagg(item), func.json_array())

    def viewer_list(self, ids: BindParameter[Any]) -> tuple[Any, ColumnElement[int]]:
        # JSON_TABLE (MariaDB 10.6 or later): a row per element of the JSON array of ids.
        return _JsonTableOfIds(ids), literal_column("v.id", Integer)

    def boolean(self, condition: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.if_(condition, literal_column("true"), literal_column("false"))

    def truth(self, value: bool) -> ColumnElement[Any]:
        return literal_column("true" if value else "false")

    def null(self) -> ColumnElement[Any]:
        return literal_column("NULL")

    def marker(self, escaped: str) -> ColumnElement[Any]:
        sql_text = escaped.replace("\\", "\\\\")  # a backslash escapes in MariaDB's string literals
        return func.json_compact(literal_column(f"'\"{sql_text}\"'", Text))

    def datetime(self, column: ColumnElement[Any]) -> ColumnElement[str]:
        # Stored as DATETIME(6), naive UTC: the fraction without its trailing zeros, or none.
        microseconds = func.microsecond(column)
        digits = func.lpad(microseconds, literal_column("6"), constant("0"))
        fraction = func.concat(constant("."), func.regexp_replace(digits, constant("0+$"), constant("")))
        return func.concat(
            func.date_format(column, constant("%Y-%m-%dT%H:%i:%s")),
            func.if_(microseconds == literal_column("0"), constant(""), fraction),
            constant("+00:00"),
            type_=Text,
        )

    def base64(self, text: ColumnElement[str], *, url: bool) -> ColumnElement[str]:
        # TO_BASE64 breaks lines every 76 characters; '=' only ever pads the end.
        encoded = func.replace(func.to_base64(text), func.char(literal_column("10")), constant(""))
        if not url:
            return encoded
        for old, new in (("+", "-"), ("/", "_"), ("=", "")):
            encoded = func.replace(encoded, constant(old), constant(new))
        return encoded

    def global_id(self, type_name: str, pk: ColumnElement[int]) -> ColumnElement[str]:
        return self.base64(func.concat(constant(f"{type_name}:"), pk), url=False)

    def document(self, data: ColumnElement[Any]) -> ColumnElement[bytes]:
        return cast(func.concat(constant('{"data":'), data, constant("}")), LargeBinary)

    def cursor(
        self, token: str, key: ColumnElement[Any] | None, key_kind: KeyKind, pk: ColumnElement[int]
    ) -> ColumnElement[str]:
        parts: list[ColumnElement[Any]] = [constant(f'["{token}",[')]
        if key is not None:
            key_json: ColumnElement[Any] = key
            if key_kind == "datetime":
                key_json = func.json_quote(self.datetime(key))
            elif key_kind == "text":
                key_json = _orjson_string(key)
            parts += [key_json, constant(",")]
        parts += [pk, constant("]]")]
        return self.base64(func.concat(*parts), url=True)


# How orjson escapes the control characters; JSON_QUOTE agrees but for the case of hex digits.
_SHORT_ESCAPES = {8: "b", 9: "t", 10: "n", 12: "f", 13: "r"}


def _orjson_string(value: ColumnElement[Any]) -> ColumnElement[str]:
    """`value` as orjson prints it as a JSON string: JSON_QUOTE, or where the text holds a control
    character (rare), every escape spelled out, since JSON_QUOTE writes u001F where orjson
    writes u001f. Backslashes are CHAR(92): a literal one would depend on the SQL mode."""
    text = cast(value, String)

    def char(code: int) -> ColumnElement[str]:
        return literal_column(f"CHAR({code} USING utf8mb4)", Text)

    def escaped(escape: str) -> ColumnElement[str]:
        return func.concat(char(92), constant(escape) if escape != '"' else char(34))

    exact: ColumnElement[Any] = func.replace(text, char(92), func.concat(char(92), char(92)))
    exact = func.replace(exact, char(34), escaped('"'))
    for code in range(32):
        exact = func.replace(exact, char(code), escaped(_SHORT_ESCAPES.get(code) or f"u{code:04x}"))
    spelled_out = func.concat(char(34), exact, char(34))
    has_control = text.op("REGEXP")(constant("[[:cntrl:]]"))
    return func.if_(has_control, spelled_out, func.json_quote(text))


class _JsonTableOfIds(FromClause):
    """`JSON_TABLE(:ids, '$[*]' COLUMNS (id INT PATH '$')) AS v`."""

    named_with_column = True
    inherit_cache = False

    def __init__(self, ids: BindParameter[Any]) -> None:
        self.ids = ids

    @property
    def _from_objects(self) -> list[FromClause]:
        return [self]


@compiles(_JsonTableOfIds)
def _compile_json_table(element: _JsonTableOfIds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"JSON_TABLE({compiler.process(element.ids, **kw)}, '$[*]' COLUMNS (id INT PATH '$')) AS v"


class _OrderedArrayAgg(ColumnElementBase[Any]):
    """MariaDB's JSON_ARRAYAGG(item ORDER BY ...), which SQLAlchemy has no construct for."""

    inherit_cache = False

    def __init__(self, item: ColumnElement[Any], order: Sequence[ColumnElement[Any]]) -> None:
        self.item, self.order = item, list(order)


@compiles(_OrderedArrayAgg)
def _compile_ordered_array_agg(element: _OrderedArrayAgg, compiler: SQLCompiler, **kw: Any) -> str:
    order = ", ".join(compiler.process(clause, **kw) for clause in element.order)
    return f"JSON_ARRAYAGG({compiler.process(element.item, **kw)} ORDER BY {order})"


_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SPELLED_OUT_DIGITS = 10


def _base64_of_prefixed_number(prefix: str, number: ColumnElement[int], digits: int) -> ColumnElement[str]:
    """base64 of `prefix` followed by the decimal digits of `number` (which has `digits` digits),
    as SQL: constants, and for the rest lookups of one digit each in tables of ten entries.

    A base64 character holds six bits of a three-byte group, taken from at most two bytes. Where
    one of those is the prefix's, or holds only the high bits of an ASCII digit (always 0011), it
    is fixed; so every character is a constant or a function of one digit, and a run of characters
    that depend on the same digit is one `substr`."""
    known = list(prefix.encode())
    length = len(known) + digits
    pieces: list[tuple[int | None, list[str]]] = []  # (the digit it depends on, its text per digit)
    for start in range(0, length, 3):
        group = range(start, min(start + 3, length))
        for char in range(len(group) + 1):  # 3 bytes make 4 characters, 2 make 3, 1 makes 2

            def text(position: int | None, digit: int, char: int = char, group: range = group) -> str:
                def byte(index: int) -> int:
                    if index < len(known):
                        return known[index]
                    return 48 + (digit if index - len(known) == position else 0)

                bits = sum(byte(index) << (16 - 8 * (index - group.start)) for index in group)
                return _BASE64[(bits >> (18 - 6 * char)) & 63]

            candidates = [index - len(known) for index in group if index >= len(known)]
            varying = [p for p in candidates if len({text(p, digit) for digit in range(10)}) > 1]
            assert len(varying) <= 1, (prefix, digits)
            position = varying[0] if varying else None
            _add(pieces, position, [text(position, digit) for digit in range(10)])
        if len(group) < 3:
            _add(pieces, None, ["=" * (3 - len(group))] * 10)
    parts: list[ColumnElement[Any]] = []
    for position, texts in pieces:
        if position is None:
            parts.append(constant(texts[0]))
            continue
        width = len(texts[0])
        place = 10 ** (digits - 1 - position)
        shifted = number.op("/")(literal_column(str(place))) if place > 1 else number
        digit_sql = shifted.op("%")(literal_column("10"))  # the digit at `position`
        offset = digit_sql.op("*")(literal_column(str(width))) if width > 1 else digit_sql
        first = offset.op("+")(literal_column("1"))  # where its text starts in the table
        parts.append(func.substr(constant("".join(texts)), first, literal_column(str(width)), type_=Text))
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + part  # Text + Text: a flat a || b || c, no parentheses for SQLite's parser to stack
    return joined


def _add(pieces: list[tuple[int | None, list[str]]], position: int | None, texts: list[str]) -> None:
    """Append characters, joining them to the previous piece when they depend on the same digit."""
    if pieces and pieces[-1][0] == position:
        pieces[-1] = (position, [a + b for a, b in zip(pieces[-1][1], texts, strict=True)])
    else:
        pieces.append((position, texts))
