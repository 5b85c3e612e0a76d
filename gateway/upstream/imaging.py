"""Pixels, for the one place the gateway must touch them: answers of the edits adapter.

A current image model answers at its own size (1024x1024) and maybe in another format;
a variations client asked for a PNG of 256, 512 or 1024 pixels square, so each image is
decoded, fitted to the asked square and encoded as PNG. An image already a PNG of the
asked size passes through untouched.
"""

from __future__ import annotations

from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 4096 * 4096  # a generated image is far smaller; refuse a decompression bomb
_KEPT_MODES = frozenset({"RGB", "RGBA", "L", "LA"})


class ImageUnreadable(ValueError):
    """The bytes are not an image Pillow can read within `MAX_PIXELS`."""


def fit_png(data: bytes, side: int) -> bytes:
    """The image in `data` as a `side`-pixel square PNG (centre-cropped if not square).

    Raises `ImageUnreadable`.
    """
    try:
        with Image.open(BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageUnreadable(f"{width}x{height} is over the pixel ceiling")
            if image.format == "PNG" and image.size == (side, side):
                return data
            image.load()
            source = image if image.mode in _KEPT_MODES else image.convert("RGBA")
            fitted = ImageOps.fit(source, (side, side), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageUnreadable(str(exc)) from exc
    out = BytesIO()
    fitted.save(out, format="PNG")
    return out.getvalue()
