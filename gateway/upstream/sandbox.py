"""The built-in offline upstream: real PNG variations of the input, OpenAI's wire format.

It is an ASGI app that the upstream client reaches through `httpx.ASGITransport`, so a
sandbox request takes exactly the code path of a real one: the multipart is rebuilt and
sent, the answer parsed and relayed. Variations are deterministic re-takes of the input at
the requested size (`variation_art`); `url` answers point at files the gateway serves
through `ImageHost`.

It also plays a current image model's edits endpoint, so that `adapter: edits` can be
tried offline: 1024x1024 variations, inline, with a `usage` block whose output tokens
follow the asked quality as OpenAI's image models count them.
"""

from __future__ import annotations

import dataclasses
import secrets
import time

import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError, InvalidRequest, error_response
from gateway.multipart import read_upload
from gateway.params import IMAGE_FIELD, ImageLimits, parse_params, read_variation_request
from gateway.store.base import StoreError
from gateway.upstream.hosting import ImageHost
from gateway.upstream.variation_art import render_variations

BASE_URL = "http://sandbox.invalid/v1"
_READ_SECONDS = 60  # the body comes from the gateway's memory, never from a slow socket
EDITS_FIELDS = frozenset(
    {
        IMAGE_FIELD,
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "input_fidelity",
        "output_format",
        "user",
    }
)
# Output tokens of one 1024x1024 image by quality, as OpenAI's image models count them.
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}
_INPUT_IMAGE_TOKENS = 388


def create_sandbox_app(host: ImageHost, *, max_side: int, models: tuple[str, ...]) -> Starlette:
    """The sandbox upstream as an ASGI app serving POST /v1/images/variations and /edits."""
    sandbox = _Sandbox(host, ImageLimits(models, max_side, _READ_SECONDS))
    return Starlette(
        routes=[
            Route("/v1/images/variations", sandbox.variations, methods=["POST"]),
            Route("/v1/images/edits", sandbox.edits, methods=["POST"]),
        ]
    )


class _Sandbox:
    """The two endpoints, drawing real images and publishing them through `host`."""

    def __init__(self, host: ImageHost, limits: ImageLimits) -> None:
        self._host, self._limits = host, limits

    async def variations(self, request: Request) -> Response:
        """Variations in OpenAI's wire format, at the asked size and format."""
        content_type = request.headers.get("content-type")
        try:
            params = await read_variation_request(content_type, request.stream(), self._limits)
        except InvalidRequest as exc:
            return error_response(exc)
        images = await anyio.to_thread.run_sync(
            render_variations, params.image, params.n, params.side
        )
        try:
            data = [await self._host.entry(png, params.response_format) for png in images]
        except StoreError:  # answered as an upstream 5xx, like any upstream's storage fault
            return error_response(GatewayError("The sandbox could not store its images."))
        return _json({"created": int(time.time()), "data": data})

    async def edits(self, request: Request) -> Response:
        """A current image model's edits: 1024x1024, inline, with a `usage` block."""
        try:
            upload = await read_upload(
                request.headers.get("content-type"),
                request.stream(),
                allowed=EDITS_FIELDS,
                file_field=IMAGE_FIELD,
                timeout_seconds=_READ_SECONDS,
            )
            # The image and n are checked as a variation's; the rest is the model's business.
            only_n = {"n": upload.fields["n"]} if "n" in upload.fields else {}
            limits = self._limits
            params = parse_params(
                dataclasses.replace(upload, fields=only_n),
                models=limits.models,
                max_side=limits.max_image_side,
            )
        except InvalidRequest as exc:
            return error_response(exc)
        images = await anyio.to_thread.run_sync(render_variations, params.image, params.n, 1024)
        data = [await self._host.entry(png, "b64_json") for png in images]
        usage = _usage(
            upload.fields.get("quality", "auto"), upload.fields.get("prompt", ""), params.n
        )
        return _json({"created": int(time.time()), "data": data, "usage": usage})


def _usage(quality: str, prompt: str, n: int) -> dict[str, object]:
    """The `usage` block of `n` images at `quality` for `prompt`, as an image model counts."""
    per_image = _OUTPUT_TOKENS.get(quality, 1056)
    text = len(prompt) // 4
    return {
        "input_tokens": text + _INPUT_IMAGE_TOKENS,
        "input_tokens_details": {"text_tokens": text, "image_tokens": _INPUT_IMAGE_TOKENS},
        "output_tokens": per_image * n,
        "total_tokens": text + _INPUT_IMAGE_TOKENS + per_image * n,
    }


def _json(answer: dict[str, object]) -> Response:
    return Response(
        orjson.dumps(answer),
        media_type="application/json",
        headers={"x-request-id": f"sandbox-{secrets.token_hex(8)}"},
    )
