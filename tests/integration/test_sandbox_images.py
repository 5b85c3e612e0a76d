"""The sandbox playing gpt-image-2's generations and edits, driven by the real openai SDK:
pictures in the asked size and format, `usage` as the model reports it, and streams of
partial images the SDK reads as its own event types."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
import openai
import pytest
from PIL import Image
from support.pngs import make_png, painted_scene

from gateway.settings.models import SandboxConfig
from gateway.store.memory import MemoryCacheStore
from gateway.upstream import sandbox
from gateway.upstream.hosting import ImageHost

T = TypeVar("T")


def _app(switches: SandboxConfig) -> Any:
    host = ImageHost(MemoryCacheStore(), "http://gateway.test")
    return sandbox.create_sandbox_app(
        host, max_side=4096, models=("gpt-image-2",), switches=switches
    )


def with_sdk(call: Callable[[openai.AsyncOpenAI], Awaitable[T]], **switches: Any) -> T:
    """`call` run with an SDK client whose wire is the sandbox app."""

    async def run() -> T:
        # The SDK's own HTTP package (httpx2, httpx's fork it depends on), over ASGI.
        transport = httpx2.ASGITransport(app=_app(SandboxConfig(**switches)))
        async with httpx2.AsyncClient(transport=transport) as http:
            client = openai.AsyncOpenAI(
                base_url=sandbox.BASE_URL, api_key="sk-none", http_client=http, max_retries=0
            )
            return await call(client)

    return asyncio.run(run())


def decoded(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_a_generation_in_the_asked_size_and_format_with_usage() -> None:
    """images.generate: webp at 1536x1024, 1367 output tokens (medium), the prompt's text
    tokens; the same prompt, the same image; another prompt, another."""

    async def call(client: openai.AsyncOpenAI) -> list[Any]:
        return [
            await client.images.generate(
                prompt=prompt, model="gpt-image-2", size="1536x1024", output_format="webp"
            )
            for prompt in ("a red circle", "a red circle", "a blue star")
        ]

    first, again, other = with_sdk(call)
    assert first.data is not None and again.data is not None and other.data is not None
    image = decoded(first.data[0].b64_json)
    assert (image.format, image.size) == ("WEBP", (1536, 1024))
    assert first.usage is not None and first.usage.output_tokens == 1367
    assert first.usage.input_tokens_details.text_tokens == len("a red circle") // 4
    assert (first.size, first.quality, first.output_format) == ("1536x1024", "medium", "webp")
    assert first.data[0].b64_json == again.data[0].b64_json != other.data[0].b64_json


def test_an_edit_of_several_images_with_a_mask() -> None:
    """images.edit with image[] x2 and a mask: the asked n, size and format, and 388 image
    input tokens per input image."""
    mask = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(mask, format="PNG")

    async def call(client: openai.AsyncOpenAI) -> Any:
        return await client.images.edit(
            model="gpt-image-2", image=[painted_scene(), make_png(32)], mask=mask.getvalue(),
            prompt="a green square", n=2, size="1024x1536", quality="low",
            output_format="jpeg",
        )  # fmt: skip

    answer = with_sdk(call)
    assert answer.data is not None and len(answer.data) == 2
    assert {(decoded(d.b64_json).format, decoded(d.b64_json).size) for d in answer.data} == {
        ("JPEG", (1024, 1536))
    }
    assert answer.usage.input_tokens_details.image_tokens == 2 * 388
    assert answer.usage.output_tokens == 2 * 167


def test_a_streamed_generation_reads_as_the_sdks_events() -> None:
    """stream=True, partial_images=2: two partial images (index 0, 1) then the completed
    image, whose usage counts 100 output tokens per partial image."""

    async def call(client: openai.AsyncOpenAI) -> list[Any]:
        stream = await client.images.generate(
            model="gpt-image-2", prompt="a yellow sun", stream=True, partial_images=2
        )
        return [event async for event in stream]

    events = with_sdk(call)
    assert [type(e).__name__ for e in events] == [
        "ImageGenPartialImageEvent", "ImageGenPartialImageEvent", "ImageGenCompletedEvent",
    ]  # fmt: skip
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    assert events[-1].usage.output_tokens == 1767 + 2 * 100
    assert decoded(events[-1].b64_json).size == (1024, 1024)


def test_a_streamed_edit_of_n_images_sums_to_the_calls_usage() -> None:
    """images.edit(stream=True): image_edit events, one completed per image; their usages
    sum to the call's (the input counted once)."""

    async def call(client: openai.AsyncOpenAI) -> list[Any]:
        stream = await client.images.edit(
            model="gpt-image-2", image=painted_scene(), prompt="two pink rings", n=2,
            stream=True, partial_images=1, quality="high",
        )  # fmt: skip
        return [event async for event in stream]

    events = with_sdk(call)
    kinds = [e.type for e in events]
    assert kinds == ["image_edit.partial_image", "image_edit.completed"] * 2
    completed = [e for e in events if e.type == "image_edit.completed"]
    assert sum(e.usage.output_tokens for e in completed) == 2 * (7024 + 100)
    assert [e.usage.input_tokens_details.image_tokens for e in completed] == [388, 0]


def test_usage_without_details_when_switched_off() -> None:
    """usage_details false: the totals only, in a stream's completed event too."""

    async def call(client: openai.AsyncOpenAI) -> dict[str, Any]:
        response = await client.post(
            "/images/generations", cast_to=httpx2.Response,
            body={"prompt": "a red circle", "stream": True},
        )  # fmt: skip
        (line,) = [x for x in response.text.splitlines() if x.startswith("data:")]
        return dict(json.loads(line[5:]))

    completed = with_sdk(call, usage_details=False)
    assert set(completed["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}


@pytest.mark.parametrize(
    ("ask", "param"),
    [
        ({"size": "1000x1000"}, "size"),
        ({"size": "3840x1024"}, "size"),
        ({"n": 11}, "n"),
        ({"stream": True, "partial_images": 4}, "partial_images"),
        ({"output_format": "gif"}, "output_format"),
        ({"response_format": "url"}, "response_format"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_what_the_model_refuses_is_a_400_naming_the_parameter(
    ask: dict[str, Any], param: str
) -> None:
    """Sizes off the 16-pixel grid or past 3:1, n over 10, partial_images over 3, another
    format, response_format, an empty prompt: 400 with that param."""

    async def call(client: openai.AsyncOpenAI) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.images.generate(**{"prompt": "a cat", **ask})
        return refused.value

    error = with_sdk(call)
    assert error.status_code == 400 and error.param == param


def test_a_retired_model_is_refused_on_both_endpoints() -> None:
    """A model of `retired`: 404 model_not_found, from generations and edits alike."""

    async def call(client: openai.AsyncOpenAI) -> list[int]:
        codes: list[int] = []
        for request in (
            client.images.generate(model="old-1", prompt="x"),
            client.images.edit(model="old-1", prompt="x", image=make_png(16)),
        ):
            with pytest.raises(openai.NotFoundError) as refused:
                await request
            codes.append(refused.value.status_code)
        return codes

    assert with_sdk(call, retired=("old-1",)) == [404, 404]
