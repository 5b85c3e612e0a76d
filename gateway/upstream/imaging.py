"""Pixels, where the gateway must touch them: answers of the edits adapter, and the
sandbox's images in the format a caller asked (`encode`).

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


def encode(image: Image.Image, output_format: str, compression: int = 100) -> bytes:
    """`image` as `png`, `jpeg` or `webp` bytes, as an image model answers in
    `output_format`; `compression` (0-100, OpenAI's `output_compression`) is the jpeg and
    webp quality. JPEG has no alpha: a transparent image is laid on white first."""
    out = BytesIO()
    if output_format == "png":
        image.save(out, format="PNG", compress_level=1)
    elif output_format == "jpeg":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
        flat.save(out, format="JPEG", quality=max(1, min(compression, 95)))
    else:
        image.save(out, format="WEBP", quality=max(1, min(compression, 100)))
    return out.getvalue()
