"""Relay pieces: the Node interface, global IDs, opaque cursors, connections and their arguments."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

import orjson
import strawberry

from db.pagination import AnyRow, InvalidKeyset, Listing, Order, Page, Window, encode_keyset_value
from schema.errors import BadInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
CONNECTION_ARGS_DOC = (
    f"Page forwards with `first`/`after` or backwards with `last`/`before`; "
    f"`first` defaults to {DEFAULT_PAGE_SIZE} and may be at most {MAX_PAGE_SIZE}."
)
# Primary keys are INTEGER columns on every engine: an ID naming anything else names nothing
# that can exist, and would make the database driver fail rather than find no row.
MAX_PK = 2**31 - 1

NodeT = TypeVar("NodeT")


@strawberry.interface(description="An object with a global ID: refetch it with `node(id:)`.")
class Node:
    id: strawberry.ID = strawberry.field(description="Globally unique; stable for the object's lifetime.")


def to_global_id(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(base64.b64encode(f"{type_name}:{pk}".encode()).decode())


def from_global_id(global_id: str, *, argument: str = "id") -> tuple[str, int]:
    """(type name, primary key) of a global ID; a malformed one is a BAD_USER_INPUT error."""
    try:
        type_name, _, digits = base64.b64decode(global_id, validate=True).decode().partition(":")
        pk = int(digits)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadInput(f"{argument}: {global_id!r} is not a valid ID.", argument=argument) from None
    if not 1 <= pk <= MAX_PK or not digits.isdigit():
        raise BadInput(f"{argument}: {global_id!r} is not a valid ID.", argument=argument)
    return type_name, pk


def pk_of(global_id: str, type_name: str, *, argument: str) -> int:
    """The primary key of a global ID that must name a `type_name`."""
    found_type, pk = from_global_id(global_id, argument=argument)
    if found_type != type_name:
        raise BadInput(
            f"{argument}: expected the ID of a {type_name}, got a {found_type}'s.", argument=argument
        )
    return pk


def encode_cursor(order: Order, keyset: tuple[Any, ...]) -> str:
    payload = orjson.dumps([order.token, [encode_keyset_value(value) for value in keyset]])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str, order: Order, listing: Listing, *, argument: str) -> tuple[Any, ...]:
    try:
        token, values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError):
        raise BadInput(f"{argument}: malformed cursor {cursor!r}.", argument=argument) from None
    if token != order.token:
        raise BadInput(
            f"{argument}: this cursor was made for the ordering {token}, not {order.token}; "
            "start again without a cursor when you change the ordering.",
            argument=argument,
        )
    try:
        keyset = listing.decode_keyset(order, values)
    except InvalidKeyset as exc:
        raise BadInput(f"{argument}: {exc}.", argument=argument) from None
    if not _storable(keyset):
        raise BadInput(f"{argument}: the cursor does not hold a position in this list.", argument=argument)
    return keyset


def _storable(keyset: tuple[Any, ...]) -> bool:
    """Whether every value of a cursor could have come from a row (a cursor is client input)."""
    *sort, pk = keyset
    if not 1 <= pk <= MAX_PK:
        return False
    for value in sort:
        if isinstance(value, str) and "\x00" in value:
            return False
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return False
        if isinstance(value, datetime) and not _utc_representable(value):
            return False
    return True


def _utc_representable(moment: datetime) -> bool:
    try:
        return moment.utcoffset() is not None and moment.astimezone(UTC) is not None
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first instant Python knows
        return False


@strawberry.enum(description="Sort direction.")
class OrderDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


def order_of(order_by: Any) -> Order:
    """The ordering an `orderBy` input asks for; by id, ascending, when it is omitted."""
    if order_by is None:
        return Order(key="ID")
    return Order(key=order_by.field.value, descending=order_by.direction is OrderDirection.DESC)


def window_of(
    listing: Listing,
    order: Order,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Window:
    if first is not None and last is not None:
        raise BadInput("Pass either first or last, not both.", argument="first")
    if first is None and last is None:
        first = DEFAULT_PAGE_SIZE
    for name, size in (("first", first), ("last", last)):
        if size is not None and not 0 <= size <= MAX_PAGE_SIZE:
            raise BadInput(
                f"{name} must be between 0 and {MAX_PAGE_SIZE}, got {size}.",
                argument=name,
                max=MAX_PAGE_SIZE,
            )
    return Window(
        first=first,
        after=decode_cursor(after, order, listing, argument="after") if after is not None else None,
        last=last,
        before=decode_cursor(before, order, listing, argument="before") if before is not None else None,
    )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type(description="A page of a list, Relay style.")
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    count_rows: strawberry.Private[Callable[[], Awaitable[int]]]
    # The list's aggregates, by db/aggregates.py's labels; given a groupBy's request, its groups
    # (schema/declare/aggregates.py).
    measures: strawberry.Private[Callable[..., Awaitable[Any]] | None] = None

    @strawberry.field(description="How many items the whole list holds (all pages); costs one count query.")
    async def total_count(self) -> int:
        return await self.count_rows()


@dataclass(frozen=True, slots=True)
class Paged:
    """What decides a connection's edges and cursors (schema/execution/loaders.py fills it)."""

    listing: Listing
    order: Order
    cursors: bool  # whether edges carry cursors (pageInfo always does)


def build_connection(
    page: Page[AnyRow],
    paged: Paged,
    to_node: Callable[[AnyRow], NodeT],
    count_rows: Callable[[], Awaitable[int]],
    measures: Callable[..., Awaitable[Any]] | None = None,
) -> Connection[NodeT]:
    listing, order, rows = paged.listing, paged.order, page.rows

    def cursor(row: AnyRow) -> str:
        return encode_cursor(order, listing.keyset_of(row, order))

    # An edge's cursor costs a JSON and a base64 encoding; most queries select only pageInfo's.
    edges = [Edge(cursor=cursor(row) if paged.cursors else "", node=to_node(row)) for row in rows]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=cursor(rows[0]) if rows else None,
            end_cursor=cursor(rows[-1]) if rows else None,
        ),
        count_rows=count_rows,
        measures=measures,
    )
