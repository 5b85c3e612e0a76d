"""The edits adapter's pure parts: usage -> cost, fitting images, and its config."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image
from support.config import EDITS_PRICE, edits_upstream
from support.pngs import make_png

from gateway.settings.config import ConfigError, ModelPrice, parse_config
from gateway.upstream.edits import usage_cost
from gateway.upstream.imaging import ImageUnreadable, fit_png

PRICE = ModelPrice.model_validate(EDITS_PRICE)


def test_cost_prices_text_image_and_output_tokens_apart() -> None:
    usage = {
        "input_tokens": 1000,
        "input_tokens_details": {"text_tokens": 200, "image_tokens": 800},
        "output_tokens": 2000,
    }
    assert usage_cost(usage, PRICE) == pytest.approx((200 * 0.005 + 800 * 0.01 + 2000 * 0.04) / 1e3)


def test_without_an_image_input_price_all_input_takes_the_input_price() -> None:
    price = PRICE.model_copy(update={"image_input_per_1k_tokens": None})
    usage = {
        "input_tokens": 1000,
        "input_tokens_details": {"image_tokens": 800},
        "output_tokens": 0,
    }
    assert usage_cost(usage, price) == pytest.approx(1000 * 0.005 / 1e3)


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
    assert usage_cost(usage, PRICE) is None


def test_image_tokens_never_count_for_more_than_the_input() -> None:
    usage = {"input_tokens": 10, "input_tokens_details": {"image_tokens": 99}, "output_tokens": 0}
    assert usage_cost(usage, PRICE) == pytest.approx(10 * 0.01 / 1e3)


def _decode(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


def test_a_png_of_the_asked_size_passes_through_untouched() -> None:
    png = make_png(64)
    assert fit_png(png, 64) is png


def test_other_formats_and_shapes_become_centred_squares_of_png() -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), "red").save(out, format="JPEG")
    assert _decode(fit_png(out.getvalue(), 256)) == ("PNG", (256, 256))
    assert _decode(fit_png(make_png(96, height=48), 32)) == ("PNG", (32, 32))


@pytest.mark.parametrize("data", [b"", b"not an image", make_png(64)[:100]])
def test_unreadable_images_are_refused(data: bytes) -> None:
    with pytest.raises(ImageUnreadable):
        fit_png(data, 256)


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("1", (5000, 5000)).save(out, format="PNG")  # 25 Mpx in a few KB
    with pytest.raises(ImageUnreadable, match="pixel ceiling"):
        fit_png(out.getvalue(), 256)


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ({"adapter": "edits"}, "adapter: edits needs an edits section"),
        (
            {**edits_upstream("https://x.invalid/v1"), "edits": {"model": "m"}},
            "no price for the model m",
        ),
        (
            edits_upstream(
                "https://x.invalid/v1",
                prices={"gpt-image-test": {**EDITS_PRICE, "image": {"low": 1}}},
            ),
            "no image price for quality high, medium",
        ),
        (edits_upstream("https://x.invalid/v1", quality="ultra"), "upstream.edits.quality"),
        (
            edits_upstream("https://x.invalid/v1", input_fidelity="max"),
            "upstream.edits.input_fidelity",
        ),
        (edits_upstream("https://x.invalid/v1", prompt=""), "upstream.edits.prompt"),
    ],
)
def test_edits_config_errors_name_what_is_missing(upstream: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"upstream": upstream})
