"""The request body limit (413 beyond it), enforced while the body is read, not after."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit:,} bytes.")
        self.limit = limit


class BodySizeLimit:
    """Raises BodyTooLarge inside `receive` as soon as a body passes its limit (a declared
    Content-Length over it fails at the first read): an endless body is never buffered whole.
    Multipart bodies (uploads) may be larger by `upload_allowance`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, upload_allowance: int) -> None:
        self.app, self.max_bytes, self.upload_allowance = app, max_bytes, upload_allowance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, declared = self.max_bytes, None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"content-type" and value.lower().startswith(b"multipart/"):
                limit = self.max_bytes + self.upload_allowance
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
