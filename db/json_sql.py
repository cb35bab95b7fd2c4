"""The JSON-building SQL of each engine, written to print values exactly as the Python path does.

PostgreSQL has json_build_object/json_agg; SQLite has json_object/json_group_array. Beyond the
names they differ where it matters for equal answers:
- SQLite has no booleans: a boolean becomes JSON through json('true'/'false').
- SQLite keeps a value's JSON-ness only through expressions and scalar subqueries, not through a
  FROM subquery's columns, so objects are built in the outermost select that aggregates them.
- SQLite before 3.44 cannot order inside an aggregate: the rows come from a subquery already in
  page order (which SQLite keeps for json_group_array); PostgreSQL orders in the aggregate.
- Neither has base64url; PostgreSQL builds it from encode(), SQLite calls quill_b64/quill_b64url
  (registered per connection in db/engine.py).

Timestamps print as Python's `datetime.isoformat()` of the UTC instant: microseconds only when
they are not zero, then `+00:00`. IDs and cursors match schema/relay.py byte for byte.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, String, Text, case, cast, func, literal_column
from sqlalchemy.dialects.postgresql import aggregate_order_by

MAX_OBJECT_KEYS = 50  # PostgreSQL functions take at most 100 arguments


def constant(value: str) -> ColumnElement[str]:
    """A string constant written into the SQL (keys, type names, orderings: never client input)."""
    assert "'" not in value, value
    assert "\\" not in value, value
    return literal_column(f"'{value}'", Text)


def b64(text: str | None) -> str | None:
    """SQLite's quill_b64: what schema/relay.py's to_global_id does to 'Type:pk'."""
    return None if text is None else base64.b64encode(text.encode()).decode()


def b64url(text: str | None) -> str | None:
    """SQLite's quill_b64url: what schema/relay.py's encode_cursor does to its JSON."""
    return None if text is None else base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


class JsonSql:
    """One engine's way of building JSON; `for_dialect` picks it."""

    name = "generic"

    @staticmethod
    def for_dialect(dialect: str) -> JsonSql:
        if dialect == "postgresql":
            return PostgresJson()
        if dialect == "sqlite":
            return SqliteJson()
        raise NotImplementedError(dialect)

    object_function = "json_build_object"

    def object(self, pairs: Sequence[tuple[str, ColumnElement[Any]]]) -> ColumnElement[Any]:
        arguments: list[ColumnElement[Any]] = []
        for key, value in pairs:
            arguments += [constant(key), value]
        return getattr(func, self.object_function)(*arguments)

    def array(
        self, item: ColumnElement[Any], order: ColumnElement[Any], keep: ColumnElement[bool]
    ) -> ColumnElement[Any]:
        """The JSON array of `item` over the rows where `keep` holds, in `order`."""
        raise NotImplementedError

    def first(
        self, item: ColumnElement[Any], order: ColumnElement[Any], keep: ColumnElement[bool], *, last: bool
    ) -> ColumnElement[Any]:
        """`item` of the first (or last) row in `order` where `keep` holds; NULL with no rows."""
        raise NotImplementedError

    def boolean(self, condition: ColumnElement[Any]) -> ColumnElement[Any]:
        raise NotImplementedError

    def truth(self, value: bool) -> ColumnElement[Any]:
        raise NotImplementedError

    def null(self) -> ColumnElement[Any]:
        raise NotImplementedError

    def marker(self, escaped: str) -> ColumnElement[Any]:
        """A JSON string whose text (escapes included) is `escaped`."""
        raise NotImplementedError

    def datetime(self, column: ColumnElement[Any]) -> ColumnElement[str]:
        raise NotImplementedError

    def json_string(self, text: ColumnElement[Any]) -> ColumnElement[str]:
        """`text` as a JSON string literal (quoted and escaped), as SQL text."""
        raise NotImplementedError

    def base64(self, text: ColumnElement[str], *, url: bool) -> ColumnElement[str]:
        raise NotImplementedError

    def document(self, data: ColumnElement[Any]) -> ColumnElement[str]:
        """The finished `data` object as text, so that no driver decodes it."""
        return data

    def global_id(self, type_name: str, pk: ColumnElement[int]) -> ColumnElement[str]:
        return self.base64(constant(f"{type_name}:") + cast(pk, String), url=False)

    def cursor(
        self, token: str, key: ColumnElement[Any] | None, key_kind: str, pk: ColumnElement[int]
    ) -> ColumnElement[str]:
        """schema/relay.py's encode_cursor: base64url of `["TOKEN",[key,id]]` (or `[id]`)."""
        parts: list[ColumnElement[Any]] = [constant(f'["{token}",[')]
        if key is not None:
            value = self.datetime(key) if key_kind == "datetime" else cast(key, String)
            parts += [self.json_string(value), constant(",")]
        parts += [cast(pk, String), constant("]]")]
        text = parts[0]
        for part in parts[1:]:
            text = text.op("||")(part)
        return self.base64(text, url=True)


class PostgresJson(JsonSql):
    name = "postgresql"

    def array(
        self, item: ColumnElement[Any], order: ColumnElement[Any], keep: ColumnElement[bool]
    ) -> ColumnElement[Any]:
        aggregated = func.json_agg(aggregate_order_by(item, order)).filter(keep)
        return func.coalesce(aggregated, literal_column("'[]'::json"))

    def first(
        self, item: ColumnElement[Any], order: ColumnElement[Any], keep: ColumnElement[bool], *, last: bool
    ) -> ColumnElement[Any]:
        ordering = order.desc() if last else order.asc()
        aggregated = func.array_agg(aggregate_order_by(item, ordering), type_=ARRAY(Text)).filter(keep)
        return aggregated[1]

    def boolean(self, condition: ColumnElement[Any]) -> ColumnElement[Any]:
        return condition

    def truth(self, value: bool) -> ColumnElement[Any]:
        return literal_column("true" if value else "false")

    def null(self) -> ColumnElement[Any]:
        return literal_column("NULL::json")

    def marker(self, escaped: str) -> ColumnElement[Any]:
        return literal_column(f"'\"{escaped}\"'::json")

    def datetime(self, column: ColumnElement[Any]) -> ColumnElement[str]:
        utc = column.op("AT TIME ZONE")(constant("UTC"))
        micros = func.to_char(column, constant("US"))
        return (
            func.to_char(utc, literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS'"))
            .op("||")(
                case((micros == constant("000000"), constant("")), else_=constant(".").op("||")(micros))
            )
            .op("||")(constant("+00:00"))
        )

    def json_string(self, text: ColumnElement[Any]) -> ColumnElement[str]:
        return cast(func.to_json(cast(text, Text)), Text)

    def base64(self, text: ColumnElement[str], *, url: bool) -> ColumnElement[str]:
        encoded = func.encode(func.convert_to(text, constant("UTF8")), constant("base64"))
        if not url:  # global IDs are far shorter than the 76 characters where encode() breaks lines
            return encoded
        return func.rtrim(func.translate(encoded, literal_column("E'+/\\n'"), constant("-_")), constant("="))

    def document(self, data: ColumnElement[Any]) -> ColumnElement[str]:
        return cast(data, Text)


class SqliteJson(JsonSql):
    name = "sqlite"
    object_function = "json_object"

    def array(
        self, item: ColumnElement[Any], order: ColumnElement[Any], keep: ColumnElement[bool]
    ) -> ColumnElement[Any]:
        return func.json_group_array(item).filter(keep)  # rows arrive in order (see the module doc)

    def first(
        self, item: ColumnElement[Any], order: ColumnElement[Any], keep: ColumnElement[bool], *, last: bool
    ) -> ColumnElement[Any]:
        return func.json_extract(
            func.json_group_array(item).filter(keep), constant("$[#-1]" if last else "$[0]")
        )

    def boolean(self, condition: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.json(case((condition, constant("true")), else_=constant("false")))

    def truth(self, value: bool) -> ColumnElement[Any]:
        return func.json(constant("true" if value else "false"))

    def null(self) -> ColumnElement[Any]:
        return literal_column("NULL")

    def marker(self, escaped: str) -> ColumnElement[Any]:
        return func.json(literal_column(f"'\"{escaped}\"'", Text))

    def datetime(self, column: ColumnElement[Any]) -> ColumnElement[str]:
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's SQLite format), UTC. One printf, not
        # a chain of ||: SQLite's parser has a small stack, and deep queries nest many of these.
        fraction = func.substr(column, literal_column("20"), literal_column("7"))
        return func.printf(
            constant("%sT%s%s+00:00"),
            func.substr(column, literal_column("1"), literal_column("10")),
            func.substr(column, literal_column("12"), literal_column("8")),
            case((fraction.in_([constant(""), constant(".000000")]), constant("")), else_=fraction),
        )

    def json_string(self, text: ColumnElement[Any]) -> ColumnElement[str]:
        return func.json_quote(cast(text, Text))

    def base64(self, text: ColumnElement[str], *, url: bool) -> ColumnElement[str]:
        return func.quill_b64url(text) if url else func.quill_b64(text)

    def cursor(
        self, token: str, key: ColumnElement[Any] | None, key_kind: str, pk: ColumnElement[int]
    ) -> ColumnElement[str]:
        # json_array prints like orjson: no spaces, strings escaped alike.
        values = [pk] if key is None else [self.datetime(key) if key_kind == "datetime" else key, pk]
        return func.quill_b64url(func.json_array(constant(token), func.json_array(*values)))
