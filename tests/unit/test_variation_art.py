"""The sandbox's variations read as variations: the same picture, each take different."""

from __future__ import annotations

import io
import itertools
import statistics

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageOps
from support.pngs import painted_scene

from gateway.upstream.variation_art import render_variations

SCENE = painted_scene()


def _open(png: bytes, side: int) -> Image.Image:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").resize((side, side), Image.Resampling.BOX)


def _layout(image: Image.Image) -> list[float]:
    """Brightness over an 8 x 8 grid: where the picture's masses sit."""
    return [float(v) for v in image.convert("L").resize((8, 8), Image.Resampling.BOX).tobytes()]


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return statistics.fmean(ImageChops.difference(a, b).convert("L").tobytes())


def _edges(image: Image.Image) -> Image.Image:
    return image.convert("L").filter(ImageFilter.FIND_EDGES)


@pytest.fixture(scope="module")
def takes() -> list[Image.Image]:
    return [_open(png, 128) for png in render_variations(SCENE, 5, 256)]


def test_variations_are_pngs_of_the_asked_size_and_deterministic() -> None:
    """Each take is a PNG of the asked size, and the same input gives the same bytes."""
    first = render_variations(SCENE, 3, 256)
    for png in first:
        with Image.open(io.BytesIO(png)) as image:
            assert (image.format, image.size) == ("PNG", (256, 256))
    assert render_variations(SCENE, 3, 256) == first


def test_each_take_keeps_the_composition(takes: list[Image.Image]) -> None:
    """Every take lays its masses out as the input does, more like it than like its mirror
    image: the same subject in the same place."""
    source = _open(SCENE, 128)
    layout, mirrored = _layout(source), _layout(ImageOps.mirror(source))
    for take in takes:
        like_source = statistics.correlation(layout, _layout(take))
        assert like_source > 0.85
        assert like_source > statistics.correlation(mirrored, _layout(take))


def test_takes_differ_from_the_input_and_from_each_other(takes: list[Image.Image]) -> None:
    """Every take is visibly different from the input and from every other take."""
    source = _open(SCENE, 128)
    assert min(_mean_difference(source, take) for take in takes) > 10
    assert min(_mean_difference(a, b) for a, b in itertools.combinations(takes, 2)) > 10


def test_a_take_is_reframed_not_only_recoloured(takes: list[Image.Image]) -> None:
    """Framing and tilt move the picture's edges: no take is the input with new colours."""
    source = _edges(_open(SCENE, 128))
    for take in takes:
        assert _mean_difference(source, _edges(take)) > 6
