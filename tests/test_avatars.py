"""uploadAvatar over the GraphQL multipart request spec: checked by content, stored, served, replaced."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from settings import Settings
from tests.api import register
from tests.conftest import GraphQLClient

UPLOAD = """mutation ($file: Upload!) { uploadAvatar(file: $file) {
  __typename ... on Error { message } ... on ValidationError { fieldErrors { field message } }
  ... on UserPayload { user { avatarUrl } } } }"""


def png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def image(kind: str, size: tuple[int, int] = (4, 3)) -> bytes:
    """A real image of `kind` ("JPEG", "WEBP", ...), made with Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buffer, format=kind)
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient,
    token: str | None,
    content: bytes,
    *,
    name: str = "me.png",
    preflight: bool = True,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if preflight:
        headers["Apollo-Require-Preflight"] = "true"
    return await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": UPLOAD, "variables": {"file": None}}),
            "map": json.dumps({"0": ["variables.file"]}),
        },
        files={"0": (name, content, "application/octet-stream")},
        headers=headers,
    )


def payload(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()["data"]["uploadAvatar"]


async def test_upload_stores_serves_and_replaces(
    client: httpx.AsyncClient, gql: GraphQLClient, settings: Settings
) -> None:
    token = (await register(gql, "ada"))["accessToken"]
    first = payload(await upload(client, token, png()))
    url = first["user"]["avatarUrl"]

    assert url.startswith("/media/avatars/") and url.endswith(".png")
    served = await client.get(url)
    assert served.status_code == 200 and served.content == png()
    assert served.headers["x-content-type-options"] == "nosniff"

    second = payload(await upload(client, token, image("JPEG"), name="photo.jpg"))
    assert second["user"]["avatarUrl"].endswith(".jpg")
    stored = sorted(p.name for p in (Path(settings.media_dir) / "avatars").iterdir())
    assert stored == [second["user"]["avatarUrl"].rsplit("/", 1)[1]]  # the old file is gone
    me = (await gql("{ me { avatarUrl } }", token=token))["data"]["me"]
    assert me == {"avatarUrl": second["user"]["avatarUrl"]}


async def test_webp_is_accepted(client: httpx.AsyncClient, gql: GraphQLClient) -> None:
    token = (await register(gql, "ada"))["accessToken"]
    assert payload(await upload(client, token, image("WEBP")))["user"]["avatarUrl"].endswith(".webp")


async def test_the_first_bytes_of_an_image_are_not_an_image(
    client: httpx.AsyncClient, gql: GraphQLClient, settings: Settings
) -> None:
    """Files are decoded, not judged by their magic bytes: a JPEG or WebP header before anything
    else, a PNG cut short, and a GIF (a real image, not one we take) are all refused."""
    token = (await register(gql, "ada"))["accessToken"]
    fakes = [
        b"\xff\xd8\xff\xe0" + b"\x00" * 100,
        b"RIFF" + struct.pack("<I", 100) + b"WEBPVP8 " + b"\x00" * 92,
        png()[:-20],
        b"\x89PNG\r\n\x1a\n<script>alert(1)</script>",
        image("GIF"),
    ]
    for fake in fakes:
        refused = payload(await upload(client, token, fake))
        assert refused["fieldErrors"] == [
            {"field": "file", "message": "file must be a PNG, JPEG or WebP image."}
        ]
    assert not (Path(settings.media_dir) / "avatars").exists()


async def test_content_decides_not_the_name(
    client: httpx.AsyncClient, gql: GraphQLClient, settings: Settings
) -> None:
    token = (await register(gql, "ada"))["accessToken"]

    refused = payload(await upload(client, token, b"<?php echo 'hi'; ?>", name="evil.png"))

    assert refused["fieldErrors"] == [{"field": "file", "message": "file must be a PNG, JPEG or WebP image."}]
    assert not (Path(settings.media_dir) / "avatars").exists()


async def test_too_large_is_refused(client: httpx.AsyncClient, gql: GraphQLClient) -> None:
    token = (await register(gql, "ada"))["accessToken"]
    big = png() + b"\x00" * (2 * 1024 * 1024)

    refused = payload(await upload(client, token, big))

    assert refused["fieldErrors"] == [{"field": "file", "message": "file must be at most 2 MB."}]


async def test_default_avatar_and_login_required(client: httpx.AsyncClient, gql: GraphQLClient) -> None:
    token = (await register(gql, "ada"))["accessToken"]
    assert (await gql("{ me { avatarUrl } }", token=token))["data"]["me"][
        "avatarUrl"
    ] == "/static/default-avatar.svg"
    assert (await client.get("/static/default-avatar.svg")).status_code == 200

    anonymous = payload(await upload(client, None, png()))
    assert anonymous["__typename"] == "AuthenticationRequiredError"


async def test_multipart_without_preflight_header_is_refused(
    client: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    """A cross-site form could post multipart without asking; the header forces a CORS preflight."""
    token = (await register(gql, "ada"))["accessToken"]

    response = await upload(client, token, png(), preflight=False)

    assert response.status_code == 400
    assert "Apollo-Require-Preflight" in response.json()["errors"][0]["message"]
