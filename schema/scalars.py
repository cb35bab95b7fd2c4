"""The DateTime scalar: printed as every answer prints instants (db/timestamps.py), read into UTC.

An input without an offset is UTC. An instant Python cannot hold in UTC (year 1 at +14:00) is
refused as the input it is, like any value that is not a DateTime.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from strawberry.schema.types.base_scalars import DateTimeDefinition, wrap_parser

from db.timestamps import utc_text


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("it is outside the instants this server can represent in UTC") from None


DATETIME = dataclasses.replace(
    DateTimeDefinition,
    description=(
        "An instant, RFC 3339 in UTC (`2025-03-01T12:00:00.5+00:00`): a fraction of a second only "
        "when it is not zero, without trailing zeros. Inputs may carry any offset; none means UTC."
    ),
    serialize=utc_text,
    parse_value=wrap_parser(_utc, "DateTime", exceptions=(ValueError, OverflowError)),
)
