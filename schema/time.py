"""Timestamps: how the API prints them (db/timestamps.py), and inputs without an offset taken as UTC."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from strawberry.schema.types.base_scalars import DateTimeDefinition

from db.timestamps import utc_text

# Strawberry's DateTime, printed as every answer prints instants (the compiled reads too).
DATETIME = dataclasses.replace(
    DateTimeDefinition,
    description=(
        "An instant, RFC 3339 in UTC (`2025-03-01T12:00:00.5+00:00`): a fraction of a second only "
        "when it is not zero, without trailing zeros. Inputs may carry any offset; none means UTC."
    ),
    serialize=utc_text,
)


def as_utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
