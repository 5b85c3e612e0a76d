"""The edits adapter: a variations request fulfilled by a current image model.

OpenAI retired dall-e-2, the only model of the variations endpoint, on 2026-05-12. This
adapter turns a validated variations request into `POST {base_url}/images/edits` with the
model the catalogue says serves now, the instruction prompt and quality, generating at
1024x1024; nothing of the caller's but the image and `n` goes upstream, and the caller's
pseudonym goes as `safety_identifier` (the field the current SDKs use; `user` is deprecated
for the image operations). The model answers inline (`b64_json`) with a `usage` block, so
each image is fitted to the size the caller asked and relayed in the format the caller
asked: inline, or at a capability URL the gateway serves (`ImageHost`). The caller sees a
dall-e-2-shaped `ImagesResponse`.

**Failover.** When the upstream says the model is gone (`model_not_found`, a 404 naming
the model, a refusal saying it was retired), the catalogue marks it and the same call goes
to the next model of the list; only when none is left is the caller answered 503
`upstream_model_unavailable`, refunded in full. To send the image again, the adapter keeps
it for `REFUSAL_WINDOW_SECONDS` after sending when another model is left (a refusal comes
within that), then lets go of it, as every request does once its image is upstream.

Cost: a request reserves the serving model's estimate per image at the configured quality;
the `usage` the model reports gives the real cost it is settled to (`gateway.upstream.pricing`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
import httpx
import orjson

from gateway.errors import (
    UpstreamAnswerLost,
    UpstreamError,
    UpstreamMisconfigured,
    UpstreamRejected,
)
from gateway.settings.models import EditsConfig
from gateway.store.base import StoreError
from gateway.upstream.base import Operation, UpstreamAnswer, UpstreamRequest, VariationRequest
from gateway.upstream.catalogue import ModelCatalogue
from gateway.upstream.client import (
    Account,
    UpstreamCall,
    error_object,
    malformed,
    request_id_header,
    str_or_none,
)
from gateway.upstream.hosting import ImageHost
from gateway.upstream.imaging import ImageUnreadable, fit_png
from gateway.upstream.model_calls import (
    LIST,
    REFUSAL_WINDOW_SECONDS,
    ModelCalls,
    model_gone,
    parse_answer,
)
from gateway.vocabulary import Size

log = logging.getLogger("gateway.edits")
GENERATED_SIZE = "1024x1024"
OPERATION = LIST  # the catalogue's list this adapter's models come from
__all__ = ["REFUSAL_WINDOW_SECONDS", "EditsUpstream", "model_gone"]
# Refusals by the model's safety system: the caller's image, so the caller's 400.
POLICY_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
# Upstream complaints about these are about the caller's request; any other named
# parameter (model, prompt, quality, size...) was the gateway's own choice.
CALLER_PARAMS = frozenset({"image", "image[]", "n"})


class EditsUpstream:
    """Fulfils variations requests through `{base_url}/images/edits` with the catalogue's
    serving model, failing over down its list when the upstream says a model is gone."""

    operations: frozenset[Operation] = frozenset({"variations"})

    def __init__(
        self,
        client: httpx.AsyncClient,
        account: Account,
        base_url: str,
        images: ImageHost,
        config: EditsConfig,
        catalogue: ModelCatalogue,
        *,
        refusal_window_seconds: float = REFUSAL_WINDOW_SECONDS,
    ) -> None:
        self._config, self._catalogue = config, catalogue
        self._models = ModelCalls(catalogue, refusal_window_seconds)
        self._call = UpstreamCall(client, account, base_url.rstrip("/") + "/images/edits")
        self._images = images
        prompt = hashlib.sha256(config.prompt.encode()).hexdigest()[:16]
        fidelity = str(config.input_fidelity)
        self._settings = "|".join((self._call.url, config.quality, fidelity, prompt))

    def _model(self) -> str:
        """The serving model; with none left, the list's first (what its refusal names)."""
        return self._catalogue.serving(LIST) or self._catalogue.models(LIST)[0]

    @property
    def identity(self) -> str:
        """What answers, for cache keys: a change of model (or setting) is a clean miss."""
        return f"edits|{self._model()}|{self._settings}"

    @property
    def headers(self) -> Mapping[str, str]:
        """Added to its answers: the model that makes them."""
        model = self._catalogue.serving(LIST)
        return {"x-gateway-upstream-model": model} if model else {}

    def image_price(self, size: Size) -> float:
        """The serving model's estimate per generated image (1024x1024, whatever the size
        asked) at the configured quality; `auto` is reserved as `high`."""
        return self._catalogue.estimate(self._model(), GENERATED_SIZE, self._config.quality)

    def estimate(self, request: UpstreamRequest) -> float:
        """`request.n` images at `image_price`."""
        return request.n * self._catalogue.estimate(
            self._model(), GENERATED_SIZE, self._config.quality
        )

    async def produce(self, request: UpstreamRequest, user: str) -> UpstreamAnswer:
        """Ask the serving model for `request.n` variations, going down the list while the
        upstream says a model is gone; raises an `UpstreamError` subclass."""
        assert isinstance(request, VariationRequest)
        held = self._models.held(request)

        async def send(model: str) -> httpx.Response:
            fields = self._fields(model, request, user)
            return await self._call.post(fields, request.image, held.sent)

        try:
            answered = await self._models.first(send, held)
        finally:
            held.release()
        if answered.response.status_code != 200:
            raise self._failure(answered.response, error_object(answered.response.content))
        return await self._answer(answered.response, answered.model, request)

    async def _answer(
        self, response: httpx.Response, model: str, request: VariationRequest
    ) -> UpstreamAnswer:
        created, generated, usage = _read_answer(response.content)
        try:
            pngs = await anyio.to_thread.run_sync(_fit_all, generated, request.side)
            data = [await self._images.entry(png, request.response_format) for png in pngs]
        except StoreError as exc:
            raise UpstreamAnswerLost("The gateway could not store the generated images.") from exc
        body = orjson.dumps({"created": created, "data": data})
        # No usable usage: the model's estimate for what it made.
        fallback = len(data) * self._catalogue.estimate(model, GENERATED_SIZE, self._config.quality)
        usd = self._models.cost(model, usage, "image", fallback)
        return UpstreamAnswer(body, len(data), response.headers.get("x-request-id"), usd)

    def _fields(self, model: str, request: VariationRequest, user: str) -> dict[str, str]:
        config = self._config
        fields = {
            "model": model,
            "prompt": config.prompt,
            "n": str(request.n),
            "size": GENERATED_SIZE,
            "quality": config.quality,
            "output_format": "png",
            "safety_identifier": user,
        }
        if config.input_fidelity is not None:
            fields["input_fidelity"] = config.input_fidelity
        return fields

    def _failure(self, response: httpx.Response, error: Mapping[str, Any]) -> UpstreamError:
        """The caller's view, kept variations-shaped, of a refusal by the edits endpoint."""
        status, code = response.status_code, str_or_none(error.get("code"))
        param = str_or_none(error.get("param"))
        if status == 400 and code in POLICY_CODES:
            message = self._call.sanitise(str(error.get("message") or ""))
            return UpstreamRejected(
                400,
                f"The image model refused this image under its content policy. {message}".strip(),
                type_="invalid_request_error",
                code=code,
                param="image",
                headers=request_id_header(response),
            )
        if status == 404 or (
            status in (400, 422) and param is not None and param not in CALLER_PARAMS
        ):
            call = self._call  # the upstream's words, logged as a caller would see them
            log.error(
                "upstream refused the gateway's edits call (HTTP %d) over %r (%s)",
                status,
                call.sanitise(param or ""),
                call.sanitise(code or ""),
            )
            return UpstreamMisconfigured(headers=request_id_header(response))
        if param == "image[]":
            error = {**error, "param": "image"}
        return self._call.failure(response, error)


def _read_answer(content: bytes) -> tuple[int, list[bytes], Mapping[str, Any]]:
    """`created`, the decoded images and `usage` of an edits answer; raises `UpstreamError`."""
    created, items, usage = parse_answer(content)
    try:
        images = [base64.b64decode(item["b64_json"], validate=True) for item in items]
    except (KeyError, TypeError, binascii.Error) as exc:
        raise malformed() from exc
    return created, images, usage


def _fit_all(images: list[bytes], side: int) -> list[bytes]:
    try:
        return [fit_png(image, side) for image in images]
    except ImageUnreadable as exc:
        raise malformed() from exc
