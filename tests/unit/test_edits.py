"""The edits adapter's pure parts: fitting images, telling a gone model, and its config."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image
from support.config import EDITS_PRICE, edits_upstream
from support.pngs import make_png

from gateway.settings.config import ConfigError, parse_config
from gateway.upstream.edits import model_gone
from gateway.upstream.imaging import ImageUnreadable, fit_png


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


TABLE = EDITS_PRICE["output_tokens"]


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ({"adapter": "edits"}, "adapter: edits needs an edits section"),
        (
            {**edits_upstream("https://x.invalid/v1"), "edits": {"model": "m"}},
            "no price for the model m",
        ),
        (
            {**edits_upstream("https://x.invalid/v1"), "edits": {"models": ["a", "b"]}},
            "no price for the model a, b",
        ),
        (
            {
                **edits_upstream("https://x.invalid/v1"),
                "edits": {"models": ["m", "m"], "prices": {"m": EDITS_PRICE}},
            },
            "m is listed twice",
        ),
        (
            edits_upstream("https://x.invalid/v1", models=["gpt-image-test"]),
            "give model \\(one\\) or models \\(a list\\), not both",
        ),
        (
            edits_upstream(
                "https://x.invalid/v1",
                prices={
                    "gpt-image-test": {**EDITS_PRICE, "output_tokens": {"1024x1024": {"low": 1}}}
                },
            ),
            "1024x1024: no output tokens for high, medium",
        ),
        (
            edits_upstream(
                "https://x.invalid/v1",
                prices={
                    "gpt-image-test": {**EDITS_PRICE, "output_tokens": {"big": TABLE["1024x1024"]}}
                },
            ),
            "output_tokens.big",
        ),
        (
            edits_upstream(
                "https://x.invalid/v1",
                prices={"gpt-image-test": {"image": {"low": 0.01}, "input_per_1k_tokens": 0.005}},
            ),
            "prices are now per 1M tokens",
        ),
        (edits_upstream("https://x.invalid/v1", model="bad model"), "upstream.edits.model"),
        (edits_upstream("https://x.invalid/v1", quality="ultra"), "upstream.edits.quality"),
        (
            edits_upstream("https://x.invalid/v1", input_fidelity="max"),
            "upstream.edits.input_fidelity",
        ),
        (edits_upstream("https://x.invalid/v1", prompt=""), "upstream.edits.prompt"),
    ],
)
def test_edits_config_errors_name_what_is_missing(upstream: dict[str, Any], message: str) -> None:
    """A bad model list or price table stops start-up naming the key and what is wrong."""
    with pytest.raises(ConfigError, match=message):
        parse_config({"upstream": upstream})


def test_without_a_model_the_edits_adapter_uses_gpt_image_2() -> None:
    """`gpt-image-2` is the edits adapter's model when the config names none."""
    upstream = {
        **edits_upstream("https://x.invalid/v1"),
        "edits": {"prices": {"gpt-image-2": EDITS_PRICE}},
    }
    edits = parse_config({"upstream": upstream}).upstream.edits
    assert edits is not None and edits.model_list == ("gpt-image-2",)


def test_model_is_a_one_item_list() -> None:
    """`model: m` is `models: [m]`; `models` keeps its order."""
    one = parse_config({"upstream": edits_upstream("https://x.invalid/v1")}).upstream.edits
    assert one is not None and one.model_list == ("gpt-image-test",)
    prices = {"b": EDITS_PRICE, "a": EDITS_PRICE}
    upstream = {
        **edits_upstream("https://x.invalid/v1"),
        "edits": {"models": ["b", "a"], "prices": prices},
    }
    two = parse_config({"upstream": upstream}).upstream.edits
    assert two is not None and two.model_list == ("b", "a")


GONE = [
    (404, {"code": "model_not_found", "param": None, "message": "The model `m` does not exist"}),
    (400, {"code": "model_not_found", "param": "model", "message": "gone"}),
    (404, {"code": None, "param": "model", "message": "Not found."}),
    (410, {"code": None, "param": None, "message": "m is no longer served"}),
    (
        400,
        {
            "code": "invalid_value",
            "param": "model",
            "message": "The model `m` has been deprecated.",
        },
    ),
    (400, {"code": None, "param": None, "message": "m was shut down on 2026-12-01."}),
]
NOT_GONE = [
    (404, {}),
    (400, {"code": "invalid_value", "param": "model", "message": "model must be a string"}),
    (400, {"code": "invalid_value", "param": "quality", "message": "bad quality"}),
    (400, {"code": "moderation_blocked", "param": None, "message": "m refused this"}),
    (500, {"code": None, "param": None, "message": "The model m does not exist"}),
]


@pytest.mark.parametrize(("status", "error"), GONE)
def test_refusals_that_say_the_model_is_gone(status: int, error: dict[str, Any]) -> None:
    """model_not_found, a 404 or 410 naming the model, or a 400 saying it was retired."""
    assert model_gone(status, error, "m")


@pytest.mark.parametrize(("status", "error"), NOT_GONE)
def test_refusals_that_do_not_say_the_model_is_gone(status: int, error: dict[str, Any]) -> None:
    """A bare 404, another parameter, a policy refusal or a 5xx are not a failover."""
    assert not model_gone(status, error, "m")
