"""Test uploads: square noise PNGs of a target size, and the multipart body the SDK sends.

Noise pixels do not compress, so the PNG's size is close to width x height x 3 and a
side can be chosen for a byte target. The pixels come from a seeded generator, so every
run uploads the same bytes.
"""

from __future__ import annotations

import io
import math
import random
import re
import struct
import zlib
from typing import NamedTuple

from PIL import Image

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # OpenAI (and the gateway) refuse 4 MiB and more
MAX_TARGET_BYTES = 4_150_000  # PNG framing adds ~0.05%: targets up to here stay under 4 MiB
# A fixed boundary in the SDK's format (httpx: 16 random bytes, hex), so bodies are stable.
BOUNDARY = "9a3cb5e0d1f2476a8b0c6e4d2f1a3b5c"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
# The text fields of `client.images.create_variation(image=..., n=1, size="256x256",
# response_format="url")`, in the order the openai SDK writes them (before the file).
FIELDS = (("n", "1"), ("response_format", "url"), ("size", "256x256"))
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$")


class BenchImage(NamedTuple):
    """One upload: its label (as given on the command line), the PNG and the request body."""

    label: str
    png: bytes
    body: bytes

    @property
    def content_type(self) -> str:
        """The Content-Type header that goes with `body`."""
        return CONTENT_TYPE


def parse_size(label: str) -> int:
    """Bytes for a label such as `50k`, `1m` or `3.9m` (decimal units: 1m = 1,000,000)."""
    match = _SIZE.match(label.strip().lower())
    if not match:
        raise ValueError(f"not a size: {label!r} (expected e.g. 50k, 1m, 3.9m)")
    number, unit = match.groups()
    size = int(float(number) * {"": 1, "k": 1_000, "m": 1_000_000}[unit])
    if not 1_000 <= size <= MAX_TARGET_BYTES:
        raise ValueError(f"{label}: sizes go from 1k to {MAX_TARGET_BYTES:,} bytes (under 4 MiB)")
    return size


def noise_png(target_bytes: int, seed: int = 0) -> bytes:
    """A square RGB noise PNG of about `target_bytes` (never over it by more than ~0.1%)."""
    side = max(1, math.isqrt(target_bytes // 3))
    pixels = random.Random(seed).randbytes(side * side * 3)
    out = io.BytesIO()
    # Level 1: noise does not compress at any level, and level 1 is the quickest to find out.
    Image.frombytes("RGB", (side, side), pixels).save(out, "PNG", compress_level=1)
    png = out.getvalue()
    if len(png) >= MAX_IMAGE_BYTES:
        raise ValueError(f"{target_bytes} bytes is too large: the PNG must stay under 4 MiB")
    return png


def multipart_body(png: bytes) -> bytes:
    """The request body the openai python SDK sends for `image=open("image.png", "rb")`.

    Text fields first, then the file part named `image` with filename `image.png`; httpx
    (under the SDK) derives the part's Content-Type from the filename, so `image/png`.
    """
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in FIELDS
    )
    file_head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
        'filename="image.png"\r\nContent-Type: image/png\r\n\r\n'
    )
    tail = f"\r\n--{BOUNDARY}--\r\n"
    return (head + file_head).encode() + png + tail.encode()


def build_image(label: str, seed: int = 0) -> BenchImage:
    """The noise PNG for a size label and its multipart body."""
    png = noise_png(parse_size(label), seed)
    return BenchImage(label, png, multipart_body(png))


def with_unique_chunk(body: bytes, tag: str) -> bytes:
    """`body` with one more PNG chunk after IHDR holding `tag`: other image bytes, same image.

    The chunk is private and ancillary ("bnCh") with a valid CRC, as bench/wrk_unique.lua
    builds it for every request, so the upload is a cache miss and still a valid PNG.
    """
    return b"".join(unique_parts(body, tag))


def unique_parts(body: bytes, tag: str) -> tuple[bytes, bytes, bytes]:
    """`with_unique_chunk(body, tag)` as three parts: before the chunk, the chunk, after."""
    at = body.index(b"\x89PNG\r\n\x1a\n") + 33  # the signature and IHDR
    return body[:at], unique_chunk(tag), body[at:]


def unique_chunk(tag: str) -> bytes:
    """The PNG chunk holding `tag` (see `with_unique_chunk`)."""
    data = b"bnCh" + tag.encode()
    return struct.pack(">I", len(data) - 4) + data + struct.pack(">I", zlib.crc32(data))
