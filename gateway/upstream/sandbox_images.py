"""The sandbox playing gpt-image-2: `POST /v1/images/generations` and `/v1/images/edits`.

Pictures that follow the prompt (`prompt_art`), or the input image and its mask, at the
asked size and in the asked `output_format`, always inline (`b64_json`: the model takes no
`response_format`), with the `usage` block gpt-image-2 reports: text tokens a quarter of the
prompt's characters, 388 image tokens per input image, and the output tokens of one image by
size and quality (docs/models.md's table; other sizes in proportion to their pixels), with
or without the details blocks (`upstream.sandbox.usage_details`).

`stream: true` answers server-sent events as OpenAI sends them (`sse`): for each image,
`partial_images` partial images, coarse to fine, then its completed event. Each partial image
adds 100 image output tokens, as OpenAI bills them (its image generation guide, "Partial
images cost"). OpenAI does not say how `usage` is spread when one stream carries several
images; the sandbox gives each completed event its own image's output tokens, and the
input tokens once, on the first: their sum is the call's usage.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import anyio.to_thread
import orjson
from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.errors import InvalidRequest, error_response
from gateway.settings.models import SandboxConfig
from gateway.upstream import prompt_art, sse
from gateway.upstream.imaging import encode
from gateway.upstream.sandbox_asks import Ask, read_edit, read_generation

Kind = Literal["image_generation", "image_edit"]
INPUT_IMAGE_TOKENS = 388
PARTIAL_IMAGE_TOKENS = 100
# Output tokens of one image by size and quality, as gpt-image-2 counts them (docs/models.md);
# `auto` quality comes out as medium here.
OUTPUT_TOKENS: dict[tuple[int, int], dict[str, int]] = {
    (1024, 1024): {"low": 196, "medium": 1767, "high": 7024},
    (1024, 1536): {"low": 167, "medium": 1367, "high": 5488},
    (1536, 1024): {"low": 167, "medium": 1367, "high": 5488},
}
Draw = Callable[[Ask, int], Image.Image]  # image `index` of the answer


def made_quality(quality: str) -> str:
    """The quality an image comes out at: `auto` as medium."""
    return "medium" if quality == "auto" else quality


def output_tokens(size: tuple[int, int], quality: str) -> int:
    """The output tokens of one image of `size` at `quality`."""
    quality = made_quality(quality)
    if size in OUTPUT_TOKENS:
        return OUTPUT_TOKENS[size][quality]
    return round(OUTPUT_TOKENS[(1024, 1024)][quality] * size[0] * size[1] / 1024**2)


def usage(ask: Ask, images: int, *, inputs: bool = True, details: bool = True) -> dict[str, Any]:
    """The `usage` of `images` images of `ask` (with its input tokens unless `inputs` is
    False), with the details blocks unless `details` is False."""
    text = len(ask.prompt) // 4 if inputs else 0
    image_in = INPUT_IMAGE_TOKENS * len(ask.images) if inputs else 0
    out = output_tokens(ask.size, ask.quality) + PARTIAL_IMAGE_TOKENS * ask.partial_images
    out *= images
    block: dict[str, Any] = {
        "input_tokens": text + image_in,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
        "output_tokens": out,
        "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
        "total_tokens": text + image_in + out,
    }
    if not details:
        return {k: v for k, v in block.items() if not k.endswith("_details")}
    return block


def draw_generation(ask: Ask, index: int) -> Image.Image:
    """Picture `index` of a generation."""
    transparent = ask.background == "transparent"
    return prompt_art.render_generation(ask.prompt, ask.size, index, transparent=transparent)


def draw_edit(ask: Ask, index: int) -> Image.Image:
    """Edit `index` of the input; raises `InvalidRequest` for an image it cannot read."""
    try:
        return prompt_art.render_edit(ask.images, ask.mask, ask.prompt, ask.size, index)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise InvalidRequest(
            "An input image is not a PNG, JPEG or WebP image the model can read.",
            code="invalid_image_format",
            param="image",
        ) from None


def _b64(image: Image.Image, ask: Ask) -> str:
    return base64.b64encode(encode(image, ask.output_format, ask.compression)).decode("ascii")


class ImageModel:
    """gpt-image-2's two image endpoints, played offline."""

    def __init__(self, switches: SandboxConfig) -> None:
        self._switches = switches

    async def generations(self, request: Request) -> Response:
        """`POST /v1/images/generations`."""
        return await self._answer(request, read_generation, draw_generation, "image_generation")

    async def edits(self, request: Request) -> Response:
        """`POST /v1/images/edits`."""
        return await self._answer(request, read_edit, draw_edit, "image_edit")

    async def _answer(
        self, request: Request, read: Callable[[Request], Any], draw: Draw, kind: Kind
    ) -> Response:
        try:
            ask: Ask = await read(request)
            if ask.model in self._switches.retired:
                return model_not_found(ask.model)
            if ask.stream:  # the first image drawn before answering: it may be refused
                first = await anyio.to_thread.run_sync(draw, ask, 0)
                return StreamingResponse(
                    self._events(ask, first, draw, kind), media_type=sse.MEDIA_TYPE,
                    headers=_request_id(),
                )  # fmt: skip
            return _json(await anyio.to_thread.run_sync(self._body, ask, draw))
        except InvalidRequest as exc:
            return error_response(exc)

    def _body(self, ask: Ask, draw: Draw) -> dict[str, Any]:
        images = [draw(ask, index) for index in range(ask.n)]
        return {
            "created": int(time.time()),
            "data": [{"b64_json": _b64(image, ask)} for image in images],
            "usage": usage(ask, len(images), details=self._switches.usage_details),
            "background": "transparent" if ask.background == "transparent" else "opaque",
            "size": ask.size_text, "quality": made_quality(ask.quality),
            "output_format": ask.output_format, "safety_identifier": ask.safety_identifier,
        }  # fmt: skip

    async def _events(
        self, ask: Ask, first: Image.Image, draw: Draw, kind: Kind
    ) -> AsyncIterator[bytes]:
        """Each image's partial images, then its completed event; each image drawn when
        its turn comes, so the first events leave while the others are being drawn."""
        shared = {
            "background": ask.background, "output_format": ask.output_format,
            "quality": ask.quality, "size": ask.size_text,
        }  # fmt: skip
        for number in range(ask.n):
            image = first if number == 0 else await anyio.to_thread.run_sync(draw, ask, number)
            for index in range(ask.partial_images):
                coarse = prompt_art.partial(image, index, ask.partial_images)
                b64 = await anyio.to_thread.run_sync(_b64, coarse, ask)
                event = f"{kind}.partial_image"
                yield sse.frame(event, {
                    "type": event, "b64_json": b64, "created_at": int(time.time()),
                    "partial_image_index": index, **shared,
                })  # fmt: skip
            block = usage(ask, 1, inputs=number == 0, details=self._switches.usage_details)
            event = f"{kind}.completed"
            yield sse.frame(event, {
                "type": event, "b64_json": await anyio.to_thread.run_sync(_b64, image, ask),
                "created_at": int(time.time()), "usage": block,
                "safety_identifier": ask.safety_identifier, **shared,
            })  # fmt: skip


def _request_id() -> dict[str, str]:
    return {"x-request-id": f"sandbox-{secrets.token_hex(8)}"}


def _json(answer: dict[str, Any]) -> Response:
    return Response(orjson.dumps(answer), media_type="application/json", headers=_request_id())


def model_not_found(model: str) -> Response:
    """The answer OpenAI has been seen to give for a model it does not have (reported by
    its users; OpenAI documents no error for a retired model)."""
    message = f"The model `{model}` does not exist or you do not have access to it."
    error = {"message": message, "type": "invalid_request_error", "param": None}
    return Response(
        orjson.dumps({"error": {**error, "code": "model_not_found"}}),
        status_code=404,
        media_type="application/json",
    )
