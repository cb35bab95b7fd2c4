"""An operation's answer as the transports send it: the response body as JSON bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError

from schema.execution.masking import error_code, masked

# A transport's way to write one answer of a subscription (its body) to the client at once: True
# when written (or when the client is gone), False when it would have to wait for the socket;
# then the stream yields it, to be sent by the subscription's own task.
WriteNow = Callable[[bytes], bool]

REPLAYED = "replayed"  # the executor of an answer given again under its idempotency key


@dataclass(slots=True)  # not frozen, like Request (schema/admission/admission.py): made per operation
class Answer:
    """One operation's response as JSON bytes (`{"data": ...}` with `errors` if any)."""

    body: bytes
    codes: tuple[str, ...] = ()
    executor: str = "resolvers"
    # A subscription's stream failed with this answer's errors, which end it.
    ends: bool = False
    # An answer in parts (@defer, @stream): this is the first; the later ones come from `rest`.
    rest: AsyncIterator[bytes] | None = None

    @property
    def has_errors(self) -> bool:
        return bool(self.codes)

    @property
    def replayed(self) -> bool:
        """The answer kept under the request's idempotency key: the operation did not run again."""
        return self.executor == REPLAYED


async def send_parts(rest: AsyncIterator[bytes] | None, send: Callable[[bytes], Awaitable[Any]]) -> None:
    """Send an answer's later parts (@defer, @stream; `Answer.rest`), if it has any, one by
    one; a transport that stops early (the client went away) closes them, ending their session."""
    if rest is None:
        return
    try:
        async for body in rest:
            await send(body)
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def timeout_answer(seconds: float) -> Answer:
    error = {
        "message": f"The operation took longer than {seconds:g} s and was stopped; ask for less.",
        "extensions": {"code": "OPERATION_TIMEOUT", "limitSeconds": seconds},
    }
    return Answer(orjson.dumps({"data": None, "errors": [error]}), ("OPERATION_TIMEOUT",))


def replayed_answer(body: bytes) -> Answer:
    """The answer first given under an idempotency key (db/idempotency.py), as it was."""
    errors = orjson.loads(body).get("errors") or ()
    codes = {str((error.get("extensions") or {}).get("code", "INTERNAL_SERVER_ERROR")) for error in errors}
    return Answer(body, tuple(sorted(codes)), executor=REPLAYED)


def result_answer(result: ExecutionResult) -> Answer:
    body: dict[str, Any] = {"data": result.data}
    if not result.errors:
        return Answer(orjson.dumps(body))
    errors = masked(result.errors)
    body["errors"] = [error.formatted for error in errors]
    return Answer(orjson.dumps(body), tuple(sorted({error_code(error, ran=True) for error in errors})))


def errors_answer(errors: list[GraphQLError]) -> Answer:
    body = {"data": None, "errors": [error.formatted for error in errors]}
    return Answer(orjson.dumps(body), tuple(sorted({error_code(error, ran=True) for error in errors})))
