"""What an image model's call costs in USD: the estimate a request reserves before the call
(per image, by size and quality), and the real cost the `usage` it reports says.

Reservation: the model's `output_tokens` table gives the tokens of one image of a listed
size at `low`, `medium` or `high` (`auto` is reserved as `high`); the image output price
turns them into USD. A size the table does not list is reserved at the most expensive
per-pixel rate of the sizes it lists (`auto`: its largest entry), so an estimate errs high;
the settlement then corrects it.

Settlement reads `usage` in both shapes the upstreams send. With the details blocks, text
and image input tokens, and image and text output tokens, each take their own price.
Without them, input tokens take the rate of what the operation's input mostly is (an
edit's, its images: the image input rate; a generation's, its prompt: the text rate), and
output tokens the image output rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from gateway.settings.models import ModelPrice, PricedQuality, Quality

InputKind = Literal["image", "text"]  # how input tokens without details are priced
PER = 1_000_000  # prices are per 1M tokens


def priced_quality(quality: Quality) -> PricedQuality:
    """The quality a reservation is priced at: `auto` may come out `high`."""
    return "high" if quality == "auto" else quality


def _pixels(size: str) -> int:
    width, _, height = size.partition("x")
    return int(width) * int(height)


def output_tokens(price: ModelPrice, size: str, quality: Quality) -> int:
    """The output tokens one image of `size` at `quality` is reserved at."""
    at = priced_quality(quality)
    listed = price.output_tokens
    if size in listed:
        return listed[size][at]
    if size == "auto":
        return max(tokens[at] for tokens in listed.values())
    rate = max(tokens[at] / _pixels(listed_size) for listed_size, tokens in listed.items())
    return round(rate * _pixels(size))


def per_image(price: ModelPrice, size: str, quality: Quality) -> float:
    """USD one image of `size` at `quality` is reserved at."""
    return output_tokens(price, size, quality) * price.image_output_per_1m_tokens / PER


def input_images(price: ModelPrice, count: int, tokens_per_image: int) -> float:
    """USD `count` input images of an edit are reserved at, `tokens_per_image` each."""
    return count * tokens_per_image * price.image_input_per_1m_tokens / PER


PARTIAL_IMAGE_TOKENS = 100  # image output tokens billed per partial image of a stream


def partial_images(price: ModelPrice, count: int) -> float:
    """USD `count` partial images of a stream are reserved at: OpenAI bills each 100 image
    output tokens (its image generation guide, "Partial images cost")."""
    return count * PARTIAL_IMAGE_TOKENS * price.image_output_per_1m_tokens / PER


def _tokens(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _split(total: int, details: object, parts: tuple[str, ...]) -> tuple[list[int], int]:
    """The tokens of each of `parts` the details block gives (0 when absent), and what is
    left of `total` beside them; no part counts for more than what is left."""
    given = details if isinstance(details, Mapping) else {}
    counts, left = [], total
    for part in parts:
        count = min(_tokens(given.get(part)) or 0, left)
        counts.append(count)
        left -= count
    return counts, left


def usage_cost(usage: Mapping[str, Any], price: ModelPrice, input_kind: InputKind) -> float | None:
    """The USD cost a `usage` block reports, or None when it has no usable token counts."""
    input_total, output_total = (
        _tokens(usage.get("input_tokens")),
        _tokens(usage.get("output_tokens")),
    )
    if input_total is None or output_total is None:
        return None
    text_in = price.text_input_per_1m_tokens
    image_in = price.image_input_per_1m_tokens
    image_out = price.image_output_per_1m_tokens
    text_out = price.text_output_per_1m_tokens
    (text, image), rest_in = _split(
        input_total, usage.get("input_tokens_details"), ("text_tokens", "image_tokens")
    )
    (out_image, out_text), rest_out = _split(
        output_total, usage.get("output_tokens_details"), ("image_tokens", "text_tokens")
    )
    cost = (
        text * text_in
        + image * image_in
        + rest_in * (image_in if input_kind == "image" else text_in)
    )
    cost += (out_image + rest_out) * image_out + out_text * (
        image_out if text_out is None else text_out
    )
    return cost / PER
