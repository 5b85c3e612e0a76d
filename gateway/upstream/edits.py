"""The edits adapter: a variations request fulfilled by a current image model.

OpenAI retired dall-e-2, the only model of the variations endpoint, on 2026-05-12. This
adapter turns a validated variations request into `POST {base_url}/images/edits` with the
configured model, the instruction prompt, quality and input fidelity, generating at
1024x1024; nothing of the caller's but the image and `n` goes upstream. The model answers
inline (`b64_json`) with a `usage` block, so each image is fitted to the size the caller
asked and relayed in the format the caller asked: inline, or at a capability URL the
gateway serves (`ImageHost`). The caller sees a dall-e-2-shaped `ImagesResponse`.

Cost: a request reserves the model's per-image price at the configured quality; the
`usage` the model reports gives the real cost it is settled to (see `usage_cost`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
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
from gateway.settings.config import EditsConfig, ModelPrice
from gateway.store.base import StoreError
from gateway.upstream.base import Operation, UpstreamAnswer, UpstreamRequest
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
from gateway.vocabulary import Size

log = logging.getLogger("gateway.edits")
GENERATED_SIZE = "1024x1024"
# Refusals by the model's safety system: the caller's image, so the caller's 400.
POLICY_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
# Upstream complaints about these are about the caller's request; any other named
# parameter (model, prompt, quality, size...) was the gateway's own choice.
CALLER_PARAMS = frozenset({"image", "image[]", "n"})


class EditsUpstream:
    """Fulfils variations requests through `{base_url}/images/edits` with `config.model`."""

    operations: frozenset[Operation] = frozenset({"variations"})

    def __init__(
        self,
        client: httpx.AsyncClient,
        account: Account,
        base_url: str,
        images: ImageHost,
        config: EditsConfig,
    ) -> None:
        self._config, self._price = config, config.prices[config.model]
        self._call = UpstreamCall(client, account, base_url.rstrip("/") + "/images/edits")
        self._images = images
        prompt = hashlib.sha256(config.prompt.encode()).hexdigest()[:16]
        self.identity = "|".join(
            (
                "edits",
                self._call.url,
                config.model,
                config.quality,
                str(config.input_fidelity),
                prompt,
            )
        )
        self.headers: Mapping[str, str] = {"x-gateway-upstream-model": config.model}

    def image_price(self, size: Size) -> float:
        """The model's list price per generated image at the configured quality (any asked
        size: every image is generated at 1024x1024); `auto` reserves the highest."""
        quality = self._config.quality
        return self._price.image["high" if quality == "auto" else quality]

    async def produce(self, request: UpstreamRequest, user: str) -> UpstreamAnswer:
        """Ask the model for `request.n` variations; raises an `UpstreamError` subclass."""
        response = await self._call.post(self._fields(request, user), request.image, request.sent)
        if response.status_code != 200:
            raise self._failure(response)
        created, generated, usage = _read_answer(response.content)
        try:
            pngs = await anyio.to_thread.run_sync(_fit_all, generated, request.side)
            data = [await self._images.entry(png, request.response_format) for png in pngs]
        except StoreError as exc:
            raise UpstreamAnswerLost("The gateway could not store the generated images.") from exc
        body = orjson.dumps({"created": created, "data": data})
        request_id = response.headers.get("x-request-id")
        return UpstreamAnswer(body, len(data), request_id, usage_cost(usage, self._price))

    def _fields(self, request: UpstreamRequest, user: str) -> dict[str, str]:
        config = self._config
        fields = {
            "model": config.model,
            "prompt": config.prompt,
            "n": str(request.n),
            "size": GENERATED_SIZE,
            "quality": config.quality,
            "output_format": "png",
            "user": user,
        }
        if config.input_fidelity is not None:
            fields["input_fidelity"] = config.input_fidelity
        return fields

    def _failure(self, response: httpx.Response) -> UpstreamError:
        """The caller's view, kept variations-shaped, of a refusal by the edits endpoint."""
        error = error_object(response.content)
        status, code = response.status_code, str_or_none(error.get("code"))
        param = str_or_none(error.get("param"))
        if status == 404 or code == "model_not_found":
            log.error("upstream has no model %r (HTTP %d)", self._config.model, status)
            return UpstreamMisconfigured(
                f"The image model this gateway uses ({self._config.model}) is not available "
                "upstream. This is a gateway configuration problem: contact its operators.",
                code="upstream_model_unavailable",
                headers=request_id_header(response),
            )
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
        if status in (400, 422) and param is not None and param not in CALLER_PARAMS:
            call = self._call  # the upstream's words, logged as a caller would see them
            log.error(
                "upstream refused the gateway's edits setting %r (%s)",
                call.sanitise(param),
                call.sanitise(code or ""),
            )
            return UpstreamMisconfigured(headers=request_id_header(response))
        if param == "image[]":
            error = {**error, "param": "image"}
        return self._call.failure(response, error)


def _read_answer(content: bytes) -> tuple[int, list[bytes], Mapping[str, Any]]:
    """`created`, the decoded images and `usage` of an edits answer; raises `UpstreamError`."""
    try:
        answer = orjson.loads(content)
        items = answer["data"]
        images = [base64.b64decode(item["b64_json"], validate=True) for item in items]
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error) as exc:
        raise malformed() from exc
    created = answer.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        created = int(time.time())
    usage = answer.get("usage")
    return created, images, usage if isinstance(usage, dict) else {}


def _fit_all(images: list[bytes], side: int) -> list[bytes]:
    try:
        return [fit_png(image, side) for image in images]
    except ImageUnreadable as exc:
        raise malformed() from exc


def _tokens(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def usage_cost(usage: Mapping[str, Any], price: ModelPrice) -> float | None:
    """The USD cost of a call from its `usage` block, or None when it has none usable.

    Input image tokens take `image_input_per_1k_tokens` when the model prices them apart.
    """
    input_tokens = _tokens(usage.get("input_tokens"))
    output_tokens = _tokens(usage.get("output_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    details = usage.get("input_tokens_details")
    image_tokens = _tokens(details.get("image_tokens")) if isinstance(details, dict) else None
    if price.image_input_per_1k_tokens is None or image_tokens is None:
        image_tokens = 0
    image_tokens = min(image_tokens, input_tokens)
    per_1k = (
        (input_tokens - image_tokens) * price.input_per_1k_tokens
        + image_tokens * (price.image_input_per_1k_tokens or 0.0)
        + output_tokens * price.output_per_1k_tokens
    )
    return per_1k / 1000
