"""The image API adapter: generations and edits as callers ask them, sent to today's image
models at `{base_url}/images/generations` (JSON) and `{base_url}/images/edits` (multipart,
`image[]` and `mask`).

The request is rebuilt from the validated options (`ImageOptions`): nothing else of the
caller's goes upstream, and the caller's pseudonym goes as `safety_identifier` (the
caller's own `user` and `safety_identifier` stay behind). The model's answer is relayed as
it came (`created`, `data[].b64_json`, `usage`...). The models come from the catalogue's
list, as the edits adapter's (`model_calls`: the same failover, answer reading and cost):
a request names the models that may answer it (the one the caller named, or the list's,
as the caller's team may use them).

Cost: a request reserves `n` images of its size and quality at its model's price table,
plus, for an edit, its input images at the model's `input_image_tokens` each, and for a
stream its partial images at 100 image output tokens each; the `usage` the model reports
settles it (a generation's input is text, an edit's mostly images). A stream (`stream:
true`) is opened by `open_stream` and relayed by `gateway.streaming`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import cast

import httpx

from gateway.settings.models import ModelCapabilities, Quality
from gateway.upstream import pricing
from gateway.upstream.base import (
    EditRequest,
    GenerationRequest,
    Operation,
    UpstreamAnswer,
    UpstreamRequest,
)
from gateway.upstream.catalogue import ModelCatalogue
from gateway.upstream.client import Account, FilePart, UpstreamCall, error_object
from gateway.upstream.model_calls import REFUSAL_WINDOW_SECONDS, ModelCalls, parse_answer
from gateway.upstream.streams import OpenedStream, open_first
from gateway.vocabulary import Size

ImageRequest = GenerationRequest | EditRequest


class ImageApiUpstream:
    """Serves generations and edits through the image model endpoints."""

    operations: frozenset[Operation] = frozenset({"generations", "edits"})
    headers: Mapping[str, str] = {}

    def __init__(
        self,
        client: httpx.AsyncClient,
        account: Account,
        base_url: str,
        catalogue: ModelCatalogue,
        capabilities: Callable[[str], ModelCapabilities],
        *,
        refusal_window_seconds: float = REFUSAL_WINDOW_SECONDS,
    ) -> None:
        base = base_url.rstrip("/")
        self._calls = {
            "generations": UpstreamCall(client, account, base + "/images/generations"),
            "edits": UpstreamCall(client, account, base + "/images/edits"),
        }
        self._catalogue, self.capabilities = catalogue, capabilities
        self._models = ModelCalls(catalogue, refusal_window_seconds)
        self.identity = f"images|{base}"

    def models(self, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
        """The models a caller limited to `allowed` (None: any) may name now, in order."""
        return self._models.candidates(allowed)

    def image_price(self, size: Size) -> float:
        """The first available model's estimate of one image of `size` at `auto` quality."""
        models = self.models(None)
        return self._catalogue.estimate(models[0], size, "auto") if models else 0.0

    def estimate(self, request: UpstreamRequest) -> float:
        """USD `request` is reserved at: its images at its model's price for its size and
        quality, and an edit's input images at the model's input image tokens."""
        assert isinstance(request, GenerationRequest | EditRequest)
        options = request.options
        quality = cast(Quality, options.quality)  # validated against the same values
        usd = options.n * self._catalogue.estimate(options.model, options.size, quality)
        price = self._catalogue.price(options.model)
        if isinstance(request, EditRequest):
            count = len(request.images) + (request.mask is not None)
            tokens = self.capabilities(options.model).input_image_tokens
            usd += pricing.input_images(price, count, tokens) if price is not None else 0.0
        if options.stream and price is not None:
            usd += pricing.partial_images(price, options.n * options.partial_images)
        return usd

    async def produce(self, request: UpstreamRequest, user: str) -> UpstreamAnswer:
        """Ask the first model that may answer `request`, going down its models while the
        upstream says one is gone; raises an `UpstreamError` subclass."""
        assert isinstance(request, GenerationRequest | EditRequest)
        call = self._calls[request.operation]
        held = self._models.held(request)
        send = self._sender(call, request, user, held.sent)
        try:
            answered = await self._models.first(send, held, request.options.models)
        finally:
            held.release()
        response, model = answered
        if response.status_code != 200:
            raise call.failure(response, error_object(response.content))
        _, items, usage = parse_answer(response.content)
        options = request.options
        quality = cast(Quality, options.quality)
        fallback = len(items) * self._catalogue.estimate(model, options.size, quality)
        kind: pricing.InputKind = "image" if isinstance(request, EditRequest) else "text"
        usd = self._models.cost(model, usage, kind, fallback)
        return UpstreamAnswer(
            response.content, len(items), response.headers.get("x-request-id"), usd
        )

    async def open_stream(self, request: UpstreamRequest, user: str) -> OpenedStream:
        """`request` (with `stream`) sent as `produce` sends it, through the same failover;
        its event stream once the upstream answered 200 (`gateway.streaming` relays it)."""
        assert isinstance(request, GenerationRequest | EditRequest)
        call = self._calls[request.operation]
        held = self._models.held(request)
        send = self._sender(call, request, user, held.sent)
        kind: pricing.InputKind = "image" if isinstance(request, EditRequest) else "text"
        return await open_first(
            self._models, send, held, failure=call.failure, kind=kind,
            allowed=request.options.models,
        )  # fmt: skip

    def _sender(
        self, call: UpstreamCall, request: ImageRequest, user: str, sent: Callable[[], None]
    ) -> Callable[[str], Awaitable[httpx.Response]]:
        """The call of `request` to one model (a stream's answer left unread)."""
        options = request.options
        stream = options.stream

        async def generate(model: str) -> httpx.Response:
            payload = {"model": model, **options.payload(), "safety_identifier": user}
            return await call.post_json(payload, stream=stream)

        async def edit(model: str) -> httpx.Response:
            assert isinstance(request, EditRequest)
            fields = {"model": model, **options.fields(), "safety_identifier": user}
            return await call.post_files(fields, _files(request), sent, stream=stream)

        return generate if isinstance(request, GenerationRequest) else edit


def _files(request: EditRequest) -> list[FilePart]:
    """The edit's images (`image` alone, else `image[]` each, in order) and its mask."""
    name = "image" if len(request.images) == 1 else "image[]"
    files = [(name, image.filename, image.media_type, image.data) for image in request.images]
    if request.mask is not None:
        mask = request.mask
        files.append(("mask", mask.filename, mask.media_type, mask.data))
    return files
