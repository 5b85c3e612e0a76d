"""What a relayed stream delivered, read from its events: images, and their cost from the
usage each completed event reports, partial images cut short billed as OpenAI bills them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from gateway.streaming import Tally
from gateway.upstream.pricing import PARTIAL_IMAGE_TOKENS
from gateway.upstream.sse import frame

PER_TOKEN = 30 / 1_000_000  # the image output rate; input tokens at 5 per 1M


class PricedStream:
    """An `OpenedStream` that only prices usage: 5 USD per 1M input, 30 per 1M output."""

    request_id = "req_1"

    def chunks(self) -> AsyncIterator[bytes]:
        raise NotImplementedError

    def cost(self, usage: Mapping[str, Any]) -> float | None:
        if "output_tokens" not in usage:
            return None
        return float(usage.get("input_tokens", 0) * 5 / 1e6 + usage["output_tokens"] * PER_TOKEN)

    async def aclose(self) -> None:
        return None


def partial(index: int) -> bytes:
    event = "image_generation.partial_image"
    return frame(event, {"type": event, "b64_json": "x", "partial_image_index": index})


def completed(output: int, inputs: int = 0) -> bytes:
    event = "image_generation.completed"
    usage = {"input_tokens": inputs, "output_tokens": output, "total_tokens": inputs + output}
    return frame(event, {"type": event, "b64_json": "x", "usage": usage})


def test_each_completed_event_is_an_image_and_its_usage_its_cost() -> None:
    """Two images, their usages summed (the input counted where it was reported)."""
    tally = Tally()
    stream = b"".join([partial(0), completed(1867, 40), partial(0), completed(1867)])
    for cut in range(0, len(stream), 97):  # whatever the chunks
        tally.follow(stream[cut : cut + 97])
    tally.follow(b"", end=True)
    answer = tally.delivered(PricedStream())
    assert (answer.images, answer.request_id) == (2, "req_1")
    assert answer.usd == pytest.approx((40 * 5 + 2 * 1867 * 30) / 1e6)


def test_partial_images_after_the_last_image_are_billed_at_100_tokens_each() -> None:
    """A stream that ends (or is cut) after two more partial images: 200 output tokens
    more, and no image more."""
    tally = Tally()
    tally.follow(completed(1767) + partial(0) + partial(1))
    answer = tally.delivered(PricedStream())
    assert answer.images == 1
    assert answer.usd == pytest.approx((1767 + 2 * PARTIAL_IMAGE_TOKENS) * PER_TOKEN)


def test_a_completed_event_without_usable_usage_leaves_the_cost_unknown() -> None:
    """No token counts: the cost is None (the pipeline then settles from the price table)."""
    tally = Tally()
    event = "image_edit.completed"
    tally.follow(frame(event, {"type": event, "b64_json": "x"}))
    assert tally.delivered(PricedStream()) == (b"", 1, "req_1", None)


def test_events_without_a_name_are_known_by_their_type() -> None:
    """`data:` lines only (no `event:` line): the JSON's `type` says what each event is."""
    tally = Tally()
    for chunk in (partial(0), completed(1767, 40)):
        tally.follow(
            b"\n".join(line for line in chunk.split(b"\n") if not line.startswith(b"event"))
        )
    answer = tally.delivered(PricedStream())
    assert answer.images == 1
    assert answer.usd == pytest.approx((40 * 5 + 1767 * 30) / 1e6)
