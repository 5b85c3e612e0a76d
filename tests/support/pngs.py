"""PNG builders for tests: valid images of any size, and handy broken ones."""

from __future__ import annotations

import io
import os

from PIL import Image


def make_png(side: int = 64, *, height: int | None = None, noise: bool = False) -> bytes:
    """A valid RGB PNG, `side` wide and `height` (default: square) high."""
    height = side if height is None else height
    if noise:
        image = Image.frombytes("RGB", (side, height), os.urandom(side * height * 3))
    else:
        image = Image.new("RGB", (side, height))
        image.putdata(
            [((x * 5) % 256, (y * 3) % 256, 128) for y in range(height) for x in range(side)]
        )
    out = io.BytesIO()
    image.save(out, format="PNG")
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
    """A structurally valid 8-bit grey PNG of any declared size, even 0 wide."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\0" + bytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
