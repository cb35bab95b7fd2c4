"""How the API prints an instant: RFC 3339 in UTC, with the shortest fraction of a second.

`2025-03-01T12:00:00+00:00`, `2025-03-01T12:00:00.5+00:00`, `2025-03-01T12:00:00.123456+00:00`:
no fraction when it is zero, and no trailing zeros. This is exactly what PostgreSQL's JSON prints
for a timestamptz in a UTC session, so a compiled read (schema/compiled/dialects.py) hands PostgreSQL's own
rendering to the client, and the resolvers print the same with `utc_text`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(moment: datetime) -> str:
    text = moment.astimezone(UTC).isoformat()  # ...SS+00:00 or ...SS.ffffff+00:00
    if moment.microsecond == 0:
        return text
    fraction, offset = text[:-6], text[-6:]
    return fraction.rstrip("0") + offset
