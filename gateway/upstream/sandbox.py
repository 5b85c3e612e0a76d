"""The built-in offline upstream: real PNG variations of the input, OpenAI's wire format.

It is an ASGI app that the upstream client reaches through `httpx.ASGITransport`, so a
sandbox request takes exactly the code path of a real one: the multipart is rebuilt and
sent, the answer parsed and relayed. Variations are deterministic re-takes of the input at
the requested size (`variation_art`); `url` answers point at files the gateway serves
through `ImageHost`.

It also plays today's image model (gpt-image-2) behind the edits endpoint, so that
`adapter: edits` runs offline: 1024x1024 variations, `b64_json` only (no `response_format`),
with a `usage` block whose output tokens follow the asked quality as gpt-image-2 counts
them, and the details blocks unless `upstream.sandbox.usage_details` is off. And it plays
the models' lifecycle: `GET /v1/models` lists the config's models with any shutdown date
of `upstream.sandbox.shutdown_dates`, a model's own entry answers for any model, and a model
of `upstream.sandbox.retired` is left out and refused (404 `model_not_found`), as OpenAI
refuses a model it no longer has.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterable

import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError, InvalidRequest, error_response
from gateway.multipart import read_upload
from gateway.params import IMAGE_FIELD, ImageLimits, parse_params, read_variation_request
from gateway.settings.models import SandboxConfig
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
        "safety_identifier",
        "user",
    }
)
# Output tokens of one 1024x1024 image by quality, as gpt-image-2 counts them (the gateway's
# own price table for it, docs/configuration.md); `auto` comes out as medium here.
_OUTPUT_TOKENS = {"low": 196, "medium": 1767, "high": 7024, "auto": 1767}
_INPUT_IMAGE_TOKENS = 388
_CREATED = 1776729600  # gpt-image-2's snapshot date, as `created` in its model entry


def create_sandbox_app(
    host: ImageHost,
    *,
    max_side: int,
    models: Iterable[str],
    switches: SandboxConfig | None = None,
) -> Starlette:
    """The sandbox upstream as an ASGI app: POST /v1/images/variations and /edits, and
    GET /v1/models and /v1/models/{model}. `models` are the ones it lists."""
    limits = ImageLimits(tuple(models), max_side, _READ_SECONDS)
    sandbox = _Sandbox(host, limits, switches or SandboxConfig())
    return Starlette(
        routes=[
            Route("/v1/images/variations", sandbox.variations, methods=["POST"]),
            Route("/v1/images/edits", sandbox.edits, methods=["POST"]),
            Route("/v1/models", sandbox.model_list, methods=["GET"]),
            Route("/v1/models/{model:path}", sandbox.model_entry, methods=["GET"]),
        ]
    )


class _Sandbox:
    """The endpoints, drawing real images and publishing them through `host`."""

    def __init__(self, host: ImageHost, limits: ImageLimits, switches: SandboxConfig) -> None:
        self._host, self._limits, self._switches = host, limits, switches

    def _entry(self, model: str) -> dict[str, object]:
        shutdown = self._switches.shutdown_dates.get(model)
        return {
            "id": model, "object": "model", "created": _CREATED, "owned_by": "system",
            "shutdown_date": shutdown,
        }  # fmt: skip

    async def model_list(self, request: Request) -> Response:
        """The models it has: the config's, less the retired ones."""
        retired = set(self._switches.retired)
        data = [self._entry(m) for m in dict.fromkeys(self._limits.models) if m not in retired]
        return _json({"object": "list", "data": data})

    async def model_entry(self, request: Request) -> Response:
        """Any model's own entry, but a retired one's: 404 `model_not_found`."""
        model = request.path_params["model"]
        if model in self._switches.retired:
            return _model_not_found(model)
        return _json(self._entry(model))

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
            model = upload.fields.get("model", "")
            if model in self._switches.retired:
                return _model_not_found(model)
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
        quality = upload.fields.get("quality", "auto")
        usage = _usage(quality, upload.fields.get("prompt", ""), params.n)
        if not self._switches.usage_details:
            usage = {k: v for k, v in usage.items() if not k.endswith("_details")}
        answer = {
            "created": int(time.time()), "data": data, "usage": usage, "size": "1024x1024",
            "quality": "medium" if quality == "auto" else quality, "output_format": "png",
            "safety_identifier": upload.fields.get("safety_identifier") or None,
        }  # fmt: skip
        return _json(answer)


def _usage(quality: str, prompt: str, n: int) -> dict[str, object]:
    """The `usage` block of `n` images at `quality` for `prompt`, as gpt-image-2 counts."""
    per_image = _OUTPUT_TOKENS.get(quality, _OUTPUT_TOKENS["auto"])
    text = len(prompt) // 4
    return {
        "input_tokens": text + _INPUT_IMAGE_TOKENS,
        "input_tokens_details": {"text_tokens": text, "image_tokens": _INPUT_IMAGE_TOKENS},
        "output_tokens": per_image * n,
        "output_tokens_details": {"image_tokens": per_image * n, "text_tokens": 0},
        "total_tokens": text + _INPUT_IMAGE_TOKENS + per_image * n,
    }


def _model_not_found(model: str) -> Response:
    """The answer OpenAI has been seen to give for a model it does not have (reported by
    its users; OpenAI documents no error for a retired model)."""
    message = f"The model `{model}` does not exist or you do not have access to it."
    error = {"message": message, "type": "invalid_request_error", "param": None}
    return Response(
        orjson.dumps({"error": {**error, "code": "model_not_found"}}),
        status_code=404,
        media_type="application/json",
    )


def _json(answer: dict[str, object]) -> Response:
    return Response(
        orjson.dumps(answer),
        media_type="application/json",
        headers={"x-request-id": f"sandbox-{secrets.token_hex(8)}"},
    )
