"""The built-in offline upstream: real PNG variations of the input, OpenAI's wire format.

It is an ASGI app that the upstream client reaches through `httpx.ASGITransport`, so a
sandbox request takes exactly the code path of a real one: the multipart is rebuilt and
sent, the answer parsed and relayed. Variations are deterministic image transforms (a hue
turn per index, mirrored on odd indexes) at the requested size; `url` answers point at
files the gateway serves through `ImageHost`.
"""

from __future__ import annotations

import base64
import secrets
import time
from io import BytesIO

import anyio.to_thread
import orjson
from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError, InvalidRequest, error_response
from gateway.hosting import ImageHost
from gateway.params import read_variation_request
from gateway.store.base import StoreError

BASE_URL = "http://sandbox.invalid/v1"
_READ_SECONDS = 60  # the body comes from the gateway's memory, never from a slow socket
_HUE_STEP = 47  # out of 256: a visible, never-repeating-soon turn per index


def _variation(base: Image.Image, index: int) -> bytes:
    hue, saturation, value = base.convert("HSV").split()
    turn = (index + 1) * _HUE_STEP % 256
    hue = hue.point(lambda v: (v + turn) % 256)
    image = Image.merge("HSV", (hue, saturation, value)).convert("RGB")
    if index % 2:
        image = ImageOps.mirror(image)
    out = BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def render_variations(png: bytes, n: int, side: int) -> list[bytes]:
    """`n` distinct PNG variations of `png`, each `side` pixels square."""
    with Image.open(BytesIO(png)) as source:
        base = source.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    return [_variation(base, index) for index in range(n)]


def create_sandbox_app(host: ImageHost, *, max_side: int, models: tuple[str, ...]) -> Starlette:
    """The sandbox upstream as an ASGI app serving POST /v1/images/variations."""

    async def variations(request: Request) -> Response:
        try:
            params = await read_variation_request(
                request.headers.get("content-type"),
                request.stream(),
                models=models,
                max_side=max_side,
                timeout_seconds=_READ_SECONDS,
            )
        except InvalidRequest as exc:
            return error_response(exc)
        side = int(params.size.partition("x")[0])
        images = await anyio.to_thread.run_sync(render_variations, params.image, params.n, side)
        try:
            data = [await _entry(host, png, params.response_format) for png in images]
        except StoreError:  # answered as an upstream 5xx, like any upstream's storage fault
            return error_response(GatewayError("The sandbox could not store its images."))
        body = orjson.dumps({"created": int(time.time()), "data": data})
        return Response(
            body,
            media_type="application/json",
            headers={"x-request-id": f"sandbox-{secrets.token_hex(8)}"},
        )

    return Starlette(routes=[Route("/v1/images/variations", variations, methods=["POST"])])


async def _entry(host: ImageHost, png: bytes, response_format: str) -> dict[str, str]:
    if response_format == "b64_json":
        return {"b64_json": base64.b64encode(png).decode("ascii")}
    return {"url": await host.publish(png)}
