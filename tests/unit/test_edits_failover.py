"""The edits adapter's failover on its own, with OpenAI played by an httpx mock transport:
the image is kept just long enough to be sent on, and a refusal that comes later still
moves later calls, with a retryable answer for the one that met it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from support.config import EDITS_PRICE
from support.fake_upstream import edits_usage, generated_png, model_not_found, parse_multipart
from support.pngs import make_png

from gateway.errors import UpstreamModelUnavailable
from gateway.settings.models import EditsConfig, ModelPrice
from gateway.store.memory import MemoryCacheStore
from gateway.upstream.base import VariationRequest
from gateway.upstream.catalogue import ModelCatalogue
from gateway.upstream.client import Account
from gateway.upstream.edits import EditsUpstream
from gateway.upstream.hosting import ImageHost

PNG = make_png(16)
Handler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


def request(released: list[bool]) -> VariationRequest:
    """A variations request whose image's release is noted in `released`."""
    digest = hashlib.sha256(PNG).hexdigest()
    return VariationRequest(
        PNG, digest, "dall-e-2", 1, "256x256", "b64_json", on_sent=lambda: released.append(True)
    )


def answer(model: str) -> httpx.Response:
    image = base64.b64encode(generated_png()).decode()
    body = {"created": 1, "data": [{"b64_json": image}], "usage": edits_usage(1)}
    return httpx.Response(200, json=body, headers={"x-request-id": f"ok-{model}"})


def openai(gone: set[str], seen: list[str], delay: float = 0.0) -> Handler:
    """Answers edits, refusing the `gone` models (after `delay`), noting each model asked."""

    async def handle(incoming: httpx.Request) -> httpx.Response:
        body = await incoming.aread()
        fields, files, _ = parse_multipart(incoming.headers["content-type"], body)
        assert files["image"][2] == PNG  # every attempt carries the caller's image
        seen.append(fields["model"])
        if fields["model"] in gone:
            await asyncio.sleep(delay)
            return httpx.Response(404, content=json.dumps(model_not_found(fields["model"])))
        return answer(fields["model"])

    return handle


def adapter(handler: Handler, window: float) -> tuple[EditsUpstream, ModelCatalogue]:
    price = ModelPrice.model_validate(EDITS_PRICE)
    catalogue = ModelCatalogue({"edits": ("a", "b")}, {"a": price, "b": price})
    config = EditsConfig.model_validate(
        {"models": ["a", "b"], "prices": {"a": EDITS_PRICE, "b": EDITS_PRICE}}
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    images = ImageHost(MemoryCacheStore(), "http://gateway.test")
    made = EditsUpstream(
        client, Account("sk-test"), "https://api.invalid/v1", images, config, catalogue,
        refusal_window_seconds=window,
    )  # fmt: skip
    return made, catalogue


def test_a_quick_refusal_is_sent_on_with_the_image_then_the_image_is_let_go() -> None:
    """a refused within the window: b gets the same image in the same call; the image (and
    its upload budget) is let go of once, when the call is done."""
    seen: list[str] = []
    released: list[bool] = []
    edits, catalogue = adapter(openai({"a"}, seen), window=30)
    got = asyncio.run(edits.produce(request(released), "pseudonym"))
    assert (got.images, seen, released) == (1, ["a", "b"], [True])
    assert catalogue.serving("edits") == "b"


def test_a_refusal_after_the_window_asks_for_a_retry_that_the_next_model_serves() -> None:
    """The image was let go of before a's refusal came: this call gets a retryable 503
    (refunded in full), and the retry goes straight to b."""
    seen: list[str] = []
    edits, catalogue = adapter(openai({"a"}, seen, delay=0.05), window=0)
    with pytest.raises(UpstreamModelUnavailable) as caught:
        asyncio.run(edits.produce(request([]), "pseudonym"))
    error = caught.value
    assert error.status == 503 and error.refund_in_full
    assert error.headers == {"retry-after": "1"}
    assert catalogue.serving("edits") == "b"
    asyncio.run(edits.produce(request([]), "pseudonym"))
    assert seen == ["a", "b"]


@pytest.mark.parametrize(("models", "held"), [(("a", "b"), True), (("a",), False)])
def test_the_image_is_kept_past_sending_only_while_another_model_is_left(
    models: tuple[str, ...], held: bool
) -> None:
    """With a model to fail over to, the image (and its upload budget) is still held when
    the upstream has read it; with none, it is let go of as soon as it is sent."""
    released: list[bool] = []
    seen_held: list[bool] = []

    async def handle(incoming: httpx.Request) -> httpx.Response:
        await incoming.aread()
        seen_held.append(not released)
        return answer("a")

    edits, catalogue = adapter(handle, window=30)
    for model in {"a", "b"} - set(models):
        catalogue.refused(model, "edits", None)
    asyncio.run(edits.produce(request(released), "pseudonym"))
    assert (seen_held, released) == ([held], [True])
