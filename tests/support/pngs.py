"""PNG builders for tests: valid images of any size, and any field of one set wrong."""

from __future__ import annotations

import io
import math
import os
import struct
import zlib

from PIL import Image


def make_png(
    side: int = 64, *, height: int | None = None, noise: bool = False, alpha: bool = False
) -> bytes:
    """A valid RGB PNG, `side` wide and `height` (default: square) high; with `alpha`, an
    RGBA one whose left half is fully transparent (a mask, as the edits endpoint takes)."""
    height = side if height is None else height
    if noise:
        image = Image.frombytes("RGB", (side, height), os.urandom(side * height * 3))
    else:
        image = Image.new("RGB", (side, height))
        image.putdata(
            [((x * 5) % 256, (y * 3) % 256, 128) for y in range(height) for x in range(side)]
        )
    if alpha:
        image.putalpha(Image.new("L", (side, height), 255))
        image.paste((0, 0, 0, 0), (0, 0, side // 2, height))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def make_jpeg(side: int = 64, *, kind: str = "JPEG") -> bytes:
    """A valid `side`-square JPEG (or WEBP, by `kind`)."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (200, 80, 40)).save(out, format=kind)
    return out.getvalue()


def png_of_about(size_bytes: int) -> bytes:
    """A square noise PNG just under `size_bytes` (noise does not compress)."""
    side = int((size_bytes / 3) ** 0.5)
    while True:
        data = make_png(side, noise=True)
        if len(data) <= size_bytes:
            return data
        side -= 8


def raw_png(width: int, height: int) -> bytes:
    """A structurally valid 8-bit grey PNG of any declared size, even 0 wide (all black,
    so that even a huge one is quick to build)."""
    rows = b"".join(b"\0" + bytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"".join(
        (
            PNG_SIGNATURE,
            png_chunk(b"IHDR", header),
            png_chunk(b"IDAT", zlib.compress(rows)),
            png_chunk(b"IEND", b""),
        )
    )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: (x start, y start, x step, y step).
_ADAM7: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    """One PNG chunk: length, type, data and CRC (the right one unless `crc` is given)."""
    checksum = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)


def _scanlines(width: int, height: int, bits_per_pixel: int) -> bytes:
    """Filter-type-0 rows of a simple gradient, `bits_per_pixel` deep."""
    row_bytes = math.ceil(width * bits_per_pixel / 8)
    return b"".join(
        b"\x00" + bytes((x * 7 + y * 13) % 256 for x in range(row_bytes)) for y in range(height)
    )


def _raw_image(width: int, height: int, bits_per_pixel: int, interlace: int) -> bytes:
    if not interlace:
        return _scanlines(width, height, bits_per_pixel)
    passes = []
    for x0, y0, dx, dy in _ADAM7:
        pass_width = max(0, math.ceil((width - x0) / dx))
        pass_height = max(0, math.ceil((height - y0) / dy))
        if pass_width and pass_height:  # an empty pass has no rows at all
            passes.append(_scanlines(pass_width, pass_height, bits_per_pixel))
    return b"".join(passes)


def build_png(
    width: int = 16,
    height: int | None = None,
    *,
    depth: int = 8,
    color: int = 2,
    interlace: int = 0,
    ihdr: bytes | None = None,
    idat: bool = True,
    extra: bytes = b"",
) -> bytes:
    """A PNG built chunk by chunk: valid by default, and any field can be set wrong.

    `ihdr` replaces the IHDR payload, `idat=False` leaves the image data out, and `extra`
    (already framed chunks) goes just before IEND.
    """
    height = width if height is None else height
    header = ihdr or struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    chunks = [PNG_SIGNATURE, png_chunk(b"IHDR", header)]
    if color == 3:
        chunks.append(png_chunk(b"PLTE", bytes(range(256)) * 3))
    if idat:
        bits = depth * _CHANNELS.get(color, 1)
        chunks.append(png_chunk(b"IDAT", zlib.compress(_raw_image(width, height, bits, interlace))))
    chunks += [extra, png_chunk(b"IEND", b"")]
    return b"".join(chunks)


def apng(side: int = 16, frames: int = 2) -> bytes:
    """An animated PNG: acTL, then per frame an fcTL and its data (IDAT first, then fdAT)."""
    rows = zlib.compress(_scanlines(side, side, 24))
    chunks = [PNG_SIGNATURE, png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))]
    chunks.append(png_chunk(b"acTL", struct.pack(">II", frames, 0)))
    sequence = 0
    for frame in range(frames):
        control = struct.pack(">IIIIIHHBB", sequence, side, side, 0, 0, 1, 10, 0, 0)
        chunks.append(png_chunk(b"fcTL", control))
        sequence += 1
        if frame == 0:
            chunks.append(png_chunk(b"IDAT", rows))
        else:
            chunks.append(png_chunk(b"fdAT", struct.pack(">I", sequence) + rows))
            sequence += 1
    chunks.append(png_chunk(b"IEND", b""))
    return b"".join(chunks)


def bomb(declared: int, *, height: int | None = None, depth: int = 8) -> bytes:
    """A tiny PNG whose IHDR declares `declared` pixels a side (its IDAT is a few zeros)."""
    header = struct.pack(
        ">IIBBBBB", declared, declared if height is None else height, depth, 0, 0, 0, 0
    )
    return b"".join(
        (
            PNG_SIGNATURE,
            png_chunk(b"IHDR", header),
            png_chunk(b"IDAT", zlib.compress(bytes(1 << 16), 9)),
            png_chunk(b"IEND", b""),
        )
    )


def painted_scene(side: int = 512) -> bytes:
    """A small painted landscape (sky, sun, hills, a house, a tree) as a PNG: a picture a
    person can judge a variation of, with a composition tests can measure."""
    from PIL import ImageDraw

    image = Image.new("RGB", (512, 512))
    draw = ImageDraw.Draw(image)
    for y in range(512):
        t = y / 512
        draw.line(
            [(0, y), (512, y)], fill=(int(90 + 120 * t), int(150 + 80 * t), int(235 - 40 * t))
        )
    draw.ellipse([360, 60, 450, 150], fill=(255, 214, 90))
    hills = [(0, 330), (140, 230), (290, 320), (420, 250), (512, 300), (512, 512), (0, 512)]
    draw.polygon(hills, fill=(70, 140, 70))
    draw.polygon([(0, 400), (200, 340), (512, 390), (512, 512), (0, 512)], fill=(50, 110, 55))
    draw.rectangle([170, 300, 300, 410], fill=(200, 80, 60))
    draw.polygon([(155, 305), (235, 240), (315, 305)], fill=(120, 50, 40))
    draw.rectangle([220, 350, 250, 410], fill=(90, 60, 40))
    for left in (185, 260):
        draw.rectangle([left, 320, left + 25, 345], fill=(240, 240, 200))
    draw.ellipse([360, 300, 430, 370], fill=(40, 100, 40))
    draw.rectangle([390, 365, 400, 410], fill=(90, 60, 40))
    out = io.BytesIO()
    image.resize((side, side), Image.Resampling.LANCZOS).save(out, format="PNG")
    return out.getvalue()
