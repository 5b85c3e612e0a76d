"""PNG checks from the file's structure alone: signature, IHDR, chunk lengths and CRCs, IEND.

No pixel is decoded, so a decompression bomb costs nothing here; the side ceiling stops it
from reaching anything that does decode (the sandbox). Everything raises `InvalidRequest`
with the code OpenAI would use and `param="image"`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# zlib-ng's CRC-32 (the same checksum as zlib's) runs at memory speed with the CPU's
# carry-less multiply: 0.07 ms for a 3.9 MB image, against 1 ms for zlib 1.2's.
from zlib_ng.zlib_ng import crc32

from gateway.errors import InvalidRequest

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 4 * 1024 * 1024  # OpenAI: "less than 4MB"
# The walk is a Python loop per chunk: 4 MB of empty 12-byte chunks would be 350,000 turns
# (13 times a normal upload's CPU, on the event loop). Encoders write image data in 8 to
# 64 KiB chunks, so a 4 MB PNG has a few hundred; past this many (a walk of ~2 ms) the file
# is refused.
MAX_CHUNKS = 4096
_CHUNK_HEAD = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_VALID_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


class PngInfo(NamedTuple):
    width: int
    height: int
    transparent: bool = False  # an alpha channel (colour type 4 or 6) or a tRNS chunk


def looks_like_png(data: bytes) -> bool:
    """True when `data` starts with the PNG signature."""
    return data.startswith(SIGNATURE)


def _bad_format(why: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid input image: {why}. The image must be a valid PNG file.",
        code="invalid_image_format",
        param="image",
    )


def _bad_dimensions(why: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid image dimensions: {why}.", code="invalid_image_dimensions", param="image"
    )


def _header(view: memoryview) -> PngInfo:
    length, kind = _CHUNK_HEAD.unpack_from(view, 8)
    if kind != b"IHDR" or length != _IHDR.size:
        raise _bad_format("the first chunk is not a valid IHDR")
    width, height, depth, color, compression, filtering, interlace = _IHDR.unpack_from(view, 16)
    if depth not in _VALID_DEPTHS.get(color, ()) or compression or filtering or interlace > 1:
        raise _bad_format("the IHDR chunk has invalid values")
    return PngInfo(width, height, transparent=color in (4, 6))


def _walk_chunks(view: memoryview) -> bool:
    """Check every chunk's length and CRC, and that IDAT data and IEND are present; say
    whether a tRNS chunk (transparency without an alpha channel) is among them."""
    offset, end, seen_idat, seen_trns = 8, len(view), False, False
    for _ in range(MAX_CHUNKS):
        if offset + 12 > end:
            break
        length, kind = _CHUNK_HEAD.unpack_from(view, offset)
        data_end = offset + 8 + length
        if length > 0x7FFFFFFF or data_end + 4 > end:
            raise _bad_format("a chunk runs past the end of the file")
        (crc,) = struct.unpack_from(">I", view, data_end)
        if crc32(view[offset + 4 : data_end]) != crc:
            raise _bad_format(f"the {kind.decode('latin-1')!r} chunk has a bad CRC")
        seen_idat = seen_idat or kind == b"IDAT"
        seen_trns = seen_trns or kind == b"tRNS"
        if kind == b"IEND":
            if not seen_idat:
                raise _bad_format("the file has no image data")
            return seen_trns
        offset = data_end + 4
    else:
        raise _bad_format(f"the file has more than {MAX_CHUNKS} chunks")
    raise _bad_format("the file is truncated (no IEND chunk)")


def png_info(data: bytes) -> PngInfo:
    """The width and height of the PNG `data` and whether it has transparency, its
    structure checked (not its shape)."""
    if not looks_like_png(data) or len(data) < len(SIGNATURE) + 8 + _IHDR.size + 4:
        raise _bad_format("the file is not a PNG")
    view = memoryview(data)
    info = _header(view)
    if _walk_chunks(view):
        return info._replace(transparent=True)
    return info


def check_png(data: bytes, *, max_side: int, size: int | None = None) -> PngInfo:
    """Validate `data` as OpenAI's variations endpoint does: a square PNG under 4 MiB.

    `size` is the upload's true size when `data` was cut short on reading (default: its length).
    """
    if not data:
        raise _bad_format("the file is empty")
    if (len(data) if size is None else size) >= MAX_IMAGE_BYTES:
        raise InvalidRequest(
            "Invalid input image: the file must be less than 4 MB.",
            code="image_too_large",
            param="image",
        )
    info = png_info(data)
    if info.width == 0 or info.height == 0:
        raise _bad_dimensions("the image has no pixels")
    if info.width != info.height:
        raise _bad_dimensions(f"the image must be square, got {info.width}x{info.height}")
    if info.width > max_side:
        raise _bad_dimensions(f"sides over {max_side} pixels are not accepted")
    return info
