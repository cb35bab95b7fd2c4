"""What every mutation does the same way: demand a viewer, write one row and link its payload to
it (insert_linked, update_linked), and turn the reasons a write was refused (db/errors.py, raised
inside the write transaction so it rolls back; Refused, raised by a check before it) into typed
errors."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import strawberry
from strawberry.types.base import StrawberryObjectDefinition

from db import writes
from db.errors import AccountGone, Conflict, NotAllowed, NotFound, StaleVersion, WriteRefused
from db.events import EventOf
from db.read_connections import DataRefused
from db.visibility import Guard
from schema.admission.tokens import Authentication
from schema.compiled.sql import Write
from schema.declare.nodes import NodeType, linked
from schema.errors import (
    FAILURE_MESSAGES,
    AuthenticationRequiredError,
    AuthFailure,
    ConflictError,
    Error,
    NotFoundError,
    PermissionDeniedError,
    Refused,
    StaleVersionError,
)
from schema.execution.context import Info
from schema.execution.object_reads import NOT_READ
from schema.realtime.events import emit
from schema.relay import to_global_id

VERSION_DOC = (
    "1 when written, one more with every change. Give it back as `expectedVersion` to change or "
    "delete the object only if no one has changed it since."
)
ExpectedVersion = Annotated[
    int | None,
    strawberry.argument(
        description=(
            "Write only if the object is still at this `version`; otherwise nothing is written and "
            "the answer is a StaleVersionError with the current version. Omitted: the last write wins."
        )
    ),
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def authentication_required(reason: AuthFailure) -> AuthenticationRequiredError:
    return AuthenticationRequiredError(message=FAILURE_MESSAGES[reason], reason=reason)


def login_required(info: Info) -> AuthenticationRequiredError | None:
    """None when the request has a viewer; otherwise the error saying why it has none."""
    return login_required_for(info.context.authentication)


def login_required_for(authentication: Authentication) -> AuthenticationRequiredError | None:
    if authentication.viewer.id is not None:
        return None
    return authentication_required(authentication.failure or AuthFailure.NOT_LOGGED_IN)


def signed_in(info: Info) -> int:
    """The viewer's id; without a viewer, the mutation answers why it has none (Refused)."""
    if error := login_required(info):
        raise Refused(error)
    user_id = info.context.viewer.id
    assert user_id is not None
    return user_id


async def insert_linked(
    info: Info,
    node_type: NodeType,
    values: dict[str, Any],
    event: EventOf,
    payload: T,
    field: str,
    *,
    guarded_by: tuple[Guard, int] | None = None,
    gone: Callable[[], WriteRefused] = AccountGone,
) -> T:
    """Insert a row of `node_type` and announce `event` for it; `payload` linked to the row
    (`linked(payload, field=row.id)`). With `guarded_by` (a guard and a row's id), only if the
    viewer may change that row (db/writes.py's check); `gone()` is raised when a foreign key
    names a row deleted meanwhile.

    Where it can (PostgreSQL, compiled reads on, a payload the statement can build), one
    statement writes the row, its outbox row and the payload object's JSON
    (schema/execution/object_reads.py). Otherwise, or when that statement wrote nothing (it
    failed, or the guard refused: the ORM path's check then says why), the ORM path writes the
    row and the payload is read after the commit."""
    guard, guarded_id = guarded_by if guarded_by is not None else (None, None)
    done = await _in_one_statement(
        info, "insert", node_type, values, event, payload, field, guard, guarded_id, gone
    )
    if done is not None:
        return done
    async with info.context.db.write() as session:
        if guard is not None and guarded_id is not None:
            await writes.check(session, guard, info.context.viewer, guarded_id)
        row = await writes.insert_row(session, node_type.table, values, gone=gone)
        await emit(info, session, event.of(row))
    return linked(payload, **{field: row.id})


async def update_linked(
    info: Info,
    node_type: NodeType,
    guard: Guard,
    pk: int,
    values: dict[str, Any],
    event: EventOf | None,
    payload: T,
    field: str,
    *,
    expected_version: int | None = None,
) -> T:
    """Change row `pk` of `node_type`, if the viewer may (`guard`, db/writes.py's update_row),
    and if given, only while it is at `expected_version`; announce `event` for it; `payload`
    linked to the row. In one statement where it can, as insert_linked says; a refusal is then
    told by the ORM path's check."""
    done = None
    if values:
        done = await _in_one_statement(
            info,
            "update",
            node_type,
            values,
            event,
            payload,
            field,
            guard,
            pk,
            expected_version=expected_version,
        )
    if done is not None:
        return done
    async with info.context.db.write() as session:
        row = await writes.update_row(
            session, guard, info.context.viewer, pk, values, expected_version=expected_version
        )
        if event is not None and values:  # an update that gives no field changes nothing
            await emit(info, session, event.of(row))
    ids: dict[str, Any] = {field: pk}
    return linked(payload, **ids)


async def _in_one_statement(
    info: Info,
    kind: str,
    node_type: NodeType,
    values: dict[str, Any],
    event: EventOf | None,
    payload: T,
    field: str,
    guard: Guard | None,
    guarded_id: int | None,
    gone: Callable[[], WriteRefused] = AccountGone,
    *,
    expected_version: int | None = None,
) -> T | None:
    """`payload` linked to the row written on the compiled path's own connection (on PostgreSQL
    with the payload's JSON already read); None when nothing was written that way (see
    insert_linked)."""
    objects = info.context.objects
    if objects is None:
        return None
    nodes = objects.payload_nodes(info._raw_info.field_nodes, _type_name(payload), field)
    broker = info.context.services.broker
    outbox_event = event if broker.resumable else None  # without a log: delivered at once, below
    versioned = expected_version is not None
    written = Write(kind, node_type.table, tuple(values), outbox_event, guard, versioned)
    if versioned:
        values = {**values, "expected_version": expected_version}
    # SQLite: this process's writers take turns (db/engine.py's write_turns), this one too, so
    # it never meets the lock held by one of them; only another process can hold it then.
    try:
        async with info.context.db.turn():
            done = await objects.write(node_type, nodes, written, values, info.context.viewer, guarded_id)
    except DataRefused as refused:
        raise gone() from refused
    if done is None:
        return None
    if event is not None:
        await broker.committed(event.of(done.row))
    read = {id(nodes[0]): done.answer} if nodes is not None and done.answer is not NOT_READ else None
    ids = {field: done.row.id}
    return linked(payload, read=read, **ids)


def _type_name(payload: object) -> str:
    definition: StrawberryObjectDefinition = type(payload).__strawberry_definition__  # type: ignore[attr-defined]
    return definition.name


def refusal_as_error(refused: Exception) -> Error | None:
    if isinstance(refused, NotFound):
        return NotFoundError(message=str(refused), id=to_global_id(refused.kind.capitalize(), refused.pk))
    if isinstance(refused, NotAllowed):
        return PermissionDeniedError(message=str(refused))
    if isinstance(refused, Conflict):
        return ConflictError(message=str(refused), field=refused.field)
    if isinstance(refused, StaleVersion):
        global_id = to_global_id(refused.kind.capitalize(), refused.pk)
        return StaleVersionError(message=str(refused), id=global_id, current_version=refused.current)
    if isinstance(refused, AccountGone):
        return authentication_required(AuthFailure.ACCOUNT_GONE)
    return None


def typed_refusals(resolver: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Return a refused write as its typed error payload; anything else is a bug and propagates.

    Each error type a resolver can return must be a member of its result union."""

    @functools.wraps(resolver)
    async def resolve(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await resolver(*args, **kwargs)
        except Refused as refused:
            answer: Any = refused.error
            return answer
        except (NotFound, NotAllowed, Conflict, StaleVersion, AccountGone) as refused:
            error: Any = refusal_as_error(refused)
            return error

    return resolve
