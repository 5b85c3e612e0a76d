"""What an image model's call costs: the per-image reservation (size x quality -> tokens ->
USD, gpt-image-2's table checked against OpenAI's published per-image prices) and the
settlement from `usage`, with and without its details blocks."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.config import EDITS_PRICE

from gateway.settings.models import ModelPrice
from gateway.upstream.pricing import output_tokens, per_image, usage_cost

ROOT = Path(__file__).resolve().parents[2]
PRICE = ModelPrice.model_validate(EDITS_PRICE)
# OpenAI's per-image output prices for GPT Image 2 (its image generation guide, "Calculating
# costs"): the USD one image costs at each size and quality, input tokens aside.
OPENAI_GPT_IMAGE_2 = {
    "1024x1024": {"low": 0.006, "medium": 0.053, "high": 0.211},
    "1024x1536": {"low": 0.005, "medium": 0.041, "high": 0.165},
    "1536x1024": {"low": 0.005, "medium": 0.041, "high": 0.165},
}
SHIPPED = [
    ROOT / "config" / "gateway.yaml",
    ROOT / "config" / "gateway.compose.yaml",
    ROOT / "config" / "gateway.edits.example.yaml",
    ROOT / "deploy" / "kubernetes" / "base" / "gateway.yaml",
]


def _shipped_price(path: Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    price: dict[str, Any] = config["upstream"]["edits"]["prices"]["gpt-image-2"]
    return price


def gpt_image_2() -> ModelPrice:
    """gpt-image-2's price table as `make run` ships it."""
    return ModelPrice.model_validate(_shipped_price(SHIPPED[0]))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_every_shipped_config_prices_gpt_image_2_alike(path: Path) -> None:
    """The local, compose, example and Kubernetes configs carry one gpt-image-2 table."""
    assert _shipped_price(path) == _shipped_price(SHIPPED[0])


@pytest.mark.parametrize(
    ("size", "quality"),
    [(size, quality) for size, row in OPENAI_GPT_IMAGE_2.items() for quality in row],
)
def test_gpt_image_2_reserves_openais_per_image_price(size: str, quality: str) -> None:
    """Each size and quality's output tokens at 30 USD per 1M come to OpenAI's published
    per-image price (to its three decimals)."""
    price = gpt_image_2()
    assert price.image_output_per_1m_tokens == 30.0
    assert round(per_image(price, size, quality), 3) == OPENAI_GPT_IMAGE_2[size][quality]  # type: ignore[arg-type]


def _documented_rows() -> list[tuple[str, str, int, float]]:
    """The rows of docs/models.md's gpt-image-2 table: size, quality, tokens, USD."""
    text = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\d+x\d+)` \| `(\w+)` \| (\d+) \| ([0-9.]+) \|", text, re.M)
    return [(size, quality, int(tokens), float(usd)) for size, quality, tokens, usd in rows]


def test_the_documented_table_is_the_shipped_one() -> None:
    """docs/models.md writes down every size and quality of the shipped table, with
    its tokens and the USD they reserve."""
    price = gpt_image_2()
    rows = _documented_rows()
    assert {(size, quality) for size, quality, _, _ in rows} == {
        (size, quality) for size, tokens in price.output_tokens.items() for quality in tokens
    }
    for size, quality, tokens, usd in rows:
        assert price.output_tokens[size][quality] == tokens  # type: ignore[index]
        assert per_image(price, size, quality) == pytest.approx(usd)  # type: ignore[arg-type]


def test_auto_quality_reserves_as_high() -> None:
    """`auto` may come out high: it is reserved at the high price."""
    assert per_image(PRICE, "1024x1024", "auto") == per_image(PRICE, "1024x1024", "high") == 0.2


def test_an_unlisted_size_is_reserved_at_the_dearest_rate_per_pixel() -> None:
    """2048x2048 is four 1024x1024 images' tokens; `auto` size the largest listed entry."""
    assert output_tokens(PRICE, "2048x2048", "medium") == 4000
    assert output_tokens(PRICE, "512x512", "low") == 62
    assert output_tokens(PRICE, "auto", "low") == 250


def test_with_details_each_kind_of_token_takes_its_price() -> None:
    """Text and image input, image and text output: each at its own rate."""
    price = PRICE.model_copy(update={"text_output_per_1m_tokens": 20.0})
    usage = {
        "input_tokens": 1000,
        "input_tokens_details": {"text_tokens": 200, "image_tokens": 800},
        "output_tokens": 2100,
        "output_tokens_details": {"image_tokens": 2000, "text_tokens": 100},
    }
    expected = (200 * 5 + 800 * 10 + 2000 * 40 + 100 * 20) / 1e6
    assert usage_cost(usage, price, "image") == pytest.approx(expected)
    assert usage_cost(usage, price, "text") == pytest.approx(expected)


def test_output_text_tokens_take_the_image_rate_without_a_price_of_their_own() -> None:
    """No text output price: the image output rate (the higher, the safe side)."""
    usage = {
        "input_tokens": 0,
        "output_tokens": 100,
        "output_tokens_details": {"image_tokens": 90, "text_tokens": 10},
    }
    assert usage_cost(usage, PRICE, "image") == pytest.approx(100 * 40 / 1e6)


def test_without_details_an_edits_input_is_priced_as_images_a_generations_as_text() -> None:
    """The usage some upstreams send: totals only."""
    usage = {"input_tokens": 1000, "output_tokens": 1000}
    assert usage_cost(usage, PRICE, "image") == pytest.approx((1000 * 10 + 1000 * 40) / 1e6)
    assert usage_cost(usage, PRICE, "text") == pytest.approx((1000 * 5 + 1000 * 40) / 1e6)


def test_details_that_leave_tokens_out_price_the_rest_by_the_operation() -> None:
    """Input tokens the details do not account for take the operation's rate; no part
    counts for more than the total."""
    usage = {
        "input_tokens": 100,
        "input_tokens_details": {"text_tokens": 30},
        "output_tokens": 10,
        "output_tokens_details": {"image_tokens": 99},
    }
    assert usage_cost(usage, PRICE, "image") == pytest.approx((30 * 5 + 70 * 10 + 10 * 40) / 1e6)


@pytest.mark.parametrize(
    "usage",
    [
        {},
        {"input_tokens": 10},
        {"input_tokens": "10", "output_tokens": 5},
        {"input_tokens": 10, "output_tokens": -1},
        {"input_tokens": True, "output_tokens": 5},
    ],
)
def test_unusable_usage_gives_no_cost(usage: dict[str, object]) -> None:
    """Without whole, non-negative token counts there is no cost to settle to."""
    assert usage_cost(usage, PRICE, "image") is None


def _estimate_of(
    operation: str, n: int, size: str, quality: str, inputs: int = 0, partials: int | None = None
) -> float:
    """What the image API adapter reserves for such a request at gpt-image-2's shipped
    prices and capabilities (an edit of `inputs` images and parts, the mask among them; a
    stream of `partials` partial images per image)."""
    import httpx

    from gateway.settings.models import GPT_IMAGE_2
    from gateway.upstream.base import EditRequest, GenerationRequest, ImageOptions, InputImage
    from gateway.upstream.catalogue import ModelCatalogue
    from gateway.upstream.client import Account
    from gateway.upstream.image_api import ImageApiUpstream

    catalogue = ModelCatalogue({"edits": ("gpt-image-2",)}, {"gpt-image-2": gpt_image_2()})
    adapter = ImageApiUpstream(
        httpx.AsyncClient(), Account("k"), "http://x.invalid/v1", catalogue, lambda m: GPT_IMAGE_2
    )
    options = ImageOptions("p", ("gpt-image-2",), n, size, quality, "png", None, "auto", None)
    if partials is not None:
        options = dataclasses.replace(options, stream=True, partial_images=partials)
    if operation == "generation":
        return adapter.estimate(GenerationRequest(options))
    image = InputImage(b"", "", "image/png")
    return adapter.estimate(EditRequest(options, (image,) * (inputs - 1), image))


@pytest.mark.parametrize(
    ("row", "asked"),
    [
        ("generation, n=1, 1024x1024, `low`", ("generation", 1, "1024x1024", "low")),
        ("generation, n=2, 1536x1024, `high`", ("generation", 2, "1536x1024", "high")),
        ("generation, n=1, `auto` size, `auto` quality", ("generation", 1, "auto", "auto")),
        ("edit of 3 images and a mask, n=1, 1024x1024, `medium`",
         ("edit", 1, "1024x1024", "medium", 4)),
        ("generation, n=1, 1024x1024, `low`, `stream: true`, `partial_images: 2`",
         ("generation", 1, "1024x1024", "low", 0, 2)),
    ],
)  # fmt: skip
def test_the_documented_generations_and_edits_reservations(
    row: str, asked: tuple[Any, ...]
) -> None:
    """docs/models.md's reservation table for generations and edits is what the adapter
    reserves at gpt-image-2's shipped prices."""
    text = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {row} |")]
    documented = float(re.findall(r"= ([0-9.]+) USD", line)[0])
    assert _estimate_of(*asked) == pytest.approx(documented, abs=5e-6)
