"""Avatars: `uploadAvatar(file: Upload!)` (GraphQL multipart request spec) and where the files live.

A file is decoded with Pillow before it is kept (a PNG, JPEG or WebP that really is one, not just
its first bytes, and not a decompression bomb), stored under the media folder with a generated
name, and served under /media/ with `X-Content-Type-Options: nosniff` (server.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from pathlib import Path
from typing import Annotated, cast

import strawberry
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from db import users as user_rows
from schema.declare import linked
from schema.errors import AuthenticationRequiredError, ValidationError, validation_error
from schema.execution.context import Info
from schema.mutations import signed_in, typed_refusals
from schema.types.accounts import UserPayload

log = logging.getLogger("quill.avatars")

AVATAR_FOLDER = "avatars"
FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
MAX_PIXELS = 40_000_000  # an avatar of 2 MB that decodes to more is a decompression bomb


def image_kind(content: bytes) -> str | None:
    """The file extension of an image we accept, judged by decoding it; None otherwise."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            kind = FORMATS.get(image.format or "")
            if kind is None or image.width * image.height > MAX_PIXELS:
                return None
            image.verify()  # the structure: chunks, checksums
        with Image.open(io.BytesIO(content)) as image:
            image.load()  # the pixels: a truncated or corrupt body fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return kind


class Avatars:
    """The avatar files under the media folder."""

    def __init__(self, media_dir: str, max_bytes: int) -> None:
        self.media_dir = Path(media_dir)
        self.max_bytes = max_bytes

    async def store(self, content: bytes, extension: str) -> str:
        """Write the file under a generated name; returns its name relative to the media folder."""
        name = f"{AVATAR_FOLDER}/{uuid.uuid4().hex}.{extension}"
        await asyncio.to_thread(self._write, self.media_dir / name, content)
        return name

    @staticmethod
    def _write(path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def discard(self, name: str | None) -> None:
        """Remove a file we stored; names from elsewhere (imported data) are left alone."""
        if not name or not name.startswith(f"{AVATAR_FOLDER}/"):
            return
        path = (self.media_dir / name).resolve()
        if self.media_dir.resolve() in path.parents:
            path.unlink(missing_ok=True)


UploadAvatarResult = Annotated[
    UserPayload | ValidationError | AuthenticationRequiredError, strawberry.union("UploadAvatarResult")
]


@strawberry.type
class Mutations:
    @strawberry.mutation(
        description="Set the viewer's picture: a PNG, JPEG or WebP file of at most 2 MB, sent as a "
        "multipart request (with an `Apollo-Require-Preflight: true` header)."
    )
    @typed_refusals
    async def upload_avatar(self, info: Info, file: Upload) -> UploadAvatarResult:
        user_id = signed_in(info)
        avatars: Avatars = info.context.services.avatars
        # At most one byte over the limit: enough to refuse a large file without reading it all.
        content = await cast(UploadFile, file).read(avatars.max_bytes + 1)
        if len(content) > avatars.max_bytes:
            return validation_error(
                {"file": f"file must be at most {avatars.max_bytes // (1024 * 1024)} MB."}
            )
        extension = await asyncio.to_thread(image_kind, content)
        if extension is None:
            return validation_error({"file": "file must be a PNG, JPEG or WebP image."})
        name = await avatars.store(content, extension)
        try:
            async with info.context.db.write() as session:
                old = await user_rows.image_file_of(session, user_id)
                await user_rows.update_user(session, user_id, {"image_file": name})
        except BaseException:
            avatars.discard(name)  # nothing points at it
            raise
        avatars.discard(old)  # only once the new name is committed
        return linked(UserPayload(), user=user_id)
