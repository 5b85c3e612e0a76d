"""The built-in offline upstream: real PNG variations of the input, OpenAI's wire format.

It is an ASGI app that the upstream client reaches through `httpx.ASGITransport`, so a
sandbox request takes exactly the code path of a real one: the multipart is rebuilt and
sent, the answer parsed and relayed. Variations are deterministic re-takes of the input at
the requested size (`variation_art`); `url` answers point at files the gateway serves
through `ImageHost`.

It also plays today's image model (gpt-image-2) on its own two endpoints
(`sandbox_images`): `POST /v1/images/generations`, pictures that follow the prompt's words,
and `POST /v1/images/edits`, edits that follow the input images and the mask, so that `make
run` serves all three operations and `adapter: edits` runs offline. Both answer inline in
the asked size and `output_format`, with a `usage` block (its details blocks unless
`upstream.sandbox.usage_details` is off), and stream server-sent events with partial images
on `stream: true`. And it plays the models' lifecycle: `GET /v1/models` lists the config's
models with any shutdown date of `upstream.sandbox.shutdown_dates`, a model's own entry
answers for any model, and a model of `upstream.sandbox.retired` is left out and refused
(404 `model_not_found`), as OpenAI refuses a model it no longer has.
"""

from __future__ import annotations

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
from gateway.params import ImageLimits, read_variation_request
from gateway.settings.models import SandboxConfig
from gateway.store.base import StoreError
from gateway.upstream.hosting import ImageHost
from gateway.upstream.sandbox_images import ImageModel, model_not_found
from gateway.upstream.variation_art import render_variations

BASE_URL = "http://sandbox.invalid/v1"
_READ_SECONDS = 60  # the body comes from the gateway's memory, never from a slow socket
_CREATED = 1776729600  # gpt-image-2's snapshot date, as `created` in its model entry


def create_sandbox_app(
    host: ImageHost,
    *,
    max_side: int,
    models: Iterable[str],
    switches: SandboxConfig | None = None,
) -> Starlette:
    """The sandbox upstream as an ASGI app: POST /v1/images/variations, /generations and
    /edits, and GET /v1/models and /v1/models/{model}. `models` are the ones it lists."""
    limits = ImageLimits(tuple(models), max_side, _READ_SECONDS)
    switches = switches or SandboxConfig()
    sandbox, model = _Sandbox(host, limits, switches), ImageModel(switches)
    return Starlette(
        routes=[
            Route("/v1/images/variations", sandbox.variations, methods=["POST"]),
            Route("/v1/images/generations", model.generations, methods=["POST"]),
            Route("/v1/images/edits", model.edits, methods=["POST"]),
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
            return model_not_found(model)
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


def _json(answer: dict[str, object]) -> Response:
    return Response(
        orjson.dumps(answer),
        media_type="application/json",
        headers={"x-request-id": f"sandbox-{secrets.token_hex(8)}"},
    )
