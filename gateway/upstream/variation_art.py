"""The sandbox's variations: the same picture, re-framed, tilted, re-coloured, re-detailed.

A person looking at them should read each as another take on the input, as dall-e-2's
variations were: the subject and its composition stay, while each image frames it a
little differently (a zoom and a shift), tilts it a few degrees, moves its palette
(hue, saturation, warmth, contrast) and changes its detail (softer, crisper, flatter).
Everything is drawn from a seed made of the image's bytes and the index, so the same
input always gives the same images, and the `n` images of one answer differ.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from io import BytesIO

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

# A tilt up to 6 degrees needs a crop of at most 1/(cos 6° + sin 6°) = 0.91 of the side to
# stay clear of the corners rotation leaves empty; zooming by at least 1.18 with a shift of
# at most 3 % of the side keeps the crop inside that square.
_MAX_TILT, _ZOOM, _SHIFT = 6.0, (1.18, 1.3), 0.03

Finish = Callable[[Image.Image], Image.Image]
_FINISHES: tuple[Finish, ...] = (
    lambda image: image.filter(ImageFilter.UnsharpMask(radius=2, percent=140, threshold=2)),
    lambda image: image.filter(ImageFilter.GaussianBlur(0.8)).filter(ImageFilter.DETAIL),
    lambda image: ImageOps.posterize(image.filter(ImageFilter.SMOOTH_MORE), 4),
    lambda image: image.filter(ImageFilter.EDGE_ENHANCE),
    lambda image: ImageOps.autocontrast(image.filter(ImageFilter.SMOOTH), cutoff=1),
)


def _frame(image: Image.Image, rng: random.Random, side: int) -> Image.Image:
    """Tilt about a shifted centre, then crop the zoomed square and scale it to `side`."""
    width = image.width
    tilt = rng.uniform(2.0, _MAX_TILT) * rng.choice((-1, 1))
    crop = width / rng.uniform(*_ZOOM)
    cx = width / 2 + rng.uniform(-_SHIFT, _SHIFT) * width
    cy = width / 2 + rng.uniform(-_SHIFT, _SHIFT) * width
    turned = image.rotate(tilt, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    box = (cx - crop / 2, cy - crop / 2, cx + crop / 2, cy + crop / 2)
    return turned.resize((side, side), Image.Resampling.LANCZOS, box=box)


def _palette(image: Image.Image, rng: random.Random) -> Image.Image:
    """Turn the hue a little, and move saturation, warmth and contrast."""
    hue, saturation, value = image.convert("HSV").split()
    turn = rng.randint(5, 22) * rng.choice((-1, 1))
    hue = hue.point(lambda v: (v + turn) % 256)
    image = Image.merge("HSV", (hue, saturation, value)).convert("RGB")
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.45))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.88, 1.18))
    warm = rng.uniform(-0.08, 0.08)
    red, green, blue = image.split()
    red = red.point(lambda v: min(255, round(v * (1 + warm))))
    blue = blue.point(lambda v: min(255, round(v * (1 - warm))))
    return Image.merge("RGB", (red, green, blue))


def _seed(png: bytes, index: int) -> int:
    return int.from_bytes(hashlib.sha256(png + index.to_bytes(2, "big")).digest()[:8], "big")


def _base(png: bytes, side: int) -> Image.Image:
    """The input decoded, at no more than twice the output size (the detail filters cost
    per pixel)."""
    with Image.open(BytesIO(png)) as source:
        base = source.convert("RGB")
    if base.width > 2 * side:
        base = base.resize((2 * side, 2 * side), Image.Resampling.BILINEAR)
    return base


def _take(base: Image.Image, png: bytes, index: int, side: int) -> bytes:
    rng = random.Random(_seed(png, index))  # noqa: S311 - art, not secrets
    image = _palette(_frame(base, rng, side), rng)
    image = _FINISHES[index % len(_FINISHES)](image)
    buffer = BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def render_variations(png: bytes, n: int, side: int) -> list[bytes]:
    """`n` distinct PNG variations of `png`, each `side` pixels square, deterministic."""
    base = _base(png, side)
    return [_take(base, png, index, side) for index in range(n)]


def render_variation(png: bytes, index: int, side: int) -> bytes:
    """Variation `index` of `png` alone (the same as `render_variations`' at `index`)."""
    return _take(_base(png, side), png, index, side)
