"""PNG checks from the file structure: format, size and dimension errors as OpenAI reports them."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import pytest
from PIL import Image
from support.pngs import make_png, png_chunk

from gateway.errors import InvalidRequest
from gateway.png import MAX_CHUNKS, MAX_IMAGE_BYTES, PngInfo, check_png, looks_like_png

MAX_SIDE = 4096


def _refusal(data: bytes, *, max_side: int = MAX_SIDE) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        check_png(data, max_side=max_side)
    assert caught.value.param == "image"
    assert caught.value.status == 400
    return caught.value


def _ihdr(
    width: int = 16,
    height: int = 16,
    depth: int = 8,
    color: int = 2,
    compression: int = 0,
    filtering: int = 0,
    interlace: int = 0,
) -> bytes:
    return struct.pack(">IIBBBBB", width, height, depth, color, compression, filtering, interlace)


def test_builder_makes_pngs_pillow_decodes(make_png: Callable[..., bytes]) -> None:
    """The test PNG builder's files decode in Pillow, so "accepted" below means a real PNG."""
    for kwargs in ({}, {"depth": 16}, {"interlace": 1}, {"color": 3, "depth": 4}, {"color": 0}):
        with Image.open(io.BytesIO(make_png(13, **kwargs))) as image:
            image.load()
            assert image.size == (13, 13)


def test_valid_png_returns_its_dimensions(make_png: Callable[..., bytes]) -> None:
    """A valid square PNG is accepted and its width and height are returned."""
    assert check_png(make_png(37), max_side=MAX_SIDE) == PngInfo(width=37, height=37)


def test_pillow_encoded_png_is_accepted() -> None:
    """A PNG written by a real encoder (Pillow) passes the structural checks."""
    out = io.BytesIO()
    Image.new("RGBA", (64, 64), (10, 20, 30, 40)).save(out, format="PNG")
    assert check_png(out.getvalue(), max_side=MAX_SIDE) == PngInfo(64, 64, transparent=True)


@pytest.mark.parametrize(
    ("color", "depth"),
    [
        *[(0, depth) for depth in (1, 2, 4, 8, 16)],
        *[(3, depth) for depth in (1, 2, 4, 8)],
        *[(color, depth) for color in (2, 4, 6) for depth in (8, 16)],
    ],
)
def test_every_legal_colour_type_and_bit_depth_is_accepted(
    make_png: Callable[..., bytes], color: int, depth: int
) -> None:
    """Every colour type / bit depth pair the PNG spec allows is accepted (4 and 6 carry
    an alpha channel)."""
    info = check_png(make_png(9, color=color, depth=depth), max_side=MAX_SIDE)
    assert info == PngInfo(9, 9, transparent=color in (4, 6))


def test_sixteen_bit_png_is_accepted(make_png: Callable[..., bytes]) -> None:
    """A 16-bit-per-channel RGB PNG is accepted."""
    assert check_png(make_png(20, depth=16), max_side=MAX_SIDE) == PngInfo(20, 20)


def test_interlaced_png_is_accepted(make_png: Callable[..., bytes]) -> None:
    """An Adam7-interlaced PNG is accepted."""
    assert check_png(make_png(20, interlace=1), max_side=MAX_SIDE) == PngInfo(20, 20)


def test_palette_png_is_accepted(make_png: Callable[..., bytes]) -> None:
    """A palette (colour type 3) PNG is accepted."""
    assert check_png(make_png(20, color=3), max_side=MAX_SIDE) == PngInfo(20, 20)


def test_empty_file_is_invalid_image_format() -> None:
    """Zero bytes are refused as invalid_image_format."""
    assert _refusal(b"").code == "invalid_image_format"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64,  # JPEG
        b"GIF89a" + b"\x00" * 64,
        b"hello, this is text and not an image at all" * 2,
        b"\x89PNG\r\n\x1a",  # the signature, one byte short
    ],
    ids=["jpeg", "gif", "text", "short-signature"],
)
def test_not_a_png_is_invalid_image_format(data: bytes) -> None:
    """Bytes that do not start with the PNG signature are refused as invalid_image_format."""
    assert not looks_like_png(data)
    assert _refusal(data).code == "invalid_image_format"


@pytest.mark.parametrize("keep", [8, 20, 33, 40, -13, -12, -1])
def test_truncated_png_is_invalid_image_format(make_png: Callable[..., bytes], keep: int) -> None:
    """A PNG cut anywhere (in IHDR, in IDAT, before or inside IEND) is invalid_image_format."""
    assert _refusal(make_png(16)[:keep]).code == "invalid_image_format"


@pytest.mark.parametrize("kind", [b"IHDR", b"IDAT", b"IEND"])
def test_bad_crc_is_invalid_image_format(make_png: Callable[..., bytes], kind: bytes) -> None:
    """A corrupted byte inside any chunk (caught by its CRC) is invalid_image_format."""
    data = bytearray(make_png(16))
    crc_at = data.index(kind) + 4 + struct.unpack_from(">I", data, data.index(kind) - 4)[0]
    data[crc_at] ^= 0x01
    error = _refusal(bytes(data))
    assert error.code == "invalid_image_format"
    assert "CRC" in error.message


def test_flipped_data_byte_is_invalid_image_format(make_png: Callable[..., bytes]) -> None:
    """A flipped bit in the compressed image data is caught by the IDAT CRC."""
    data = bytearray(make_png(16))
    data[data.index(b"IDAT") + 6] ^= 0x80
    assert _refusal(bytes(data)).code == "invalid_image_format"


def test_png_without_idat_is_invalid_image_format(make_png: Callable[..., bytes]) -> None:
    """A PNG with no IDAT chunk carries no image and is invalid_image_format."""
    error = _refusal(make_png(16, idat=False))
    assert error.code == "invalid_image_format"
    assert "no image data" in error.message


def test_first_chunk_must_be_ihdr(
    make_png: Callable[..., bytes], png_chunk: Callable[..., bytes]
) -> None:
    """A PNG whose first chunk is not IHDR is invalid_image_format."""
    good = make_png(16)
    data = good[:8] + png_chunk(b"tEXt", b"Comment\x00hi") + good[8:]
    assert _refusal(data).code == "invalid_image_format"


def test_chunk_length_past_the_end_is_invalid_image_format(make_png: Callable[..., bytes]) -> None:
    """A chunk whose declared length runs past the end of the file is invalid_image_format."""
    data = bytearray(make_png(16))
    at = data.index(b"IDAT") - 4
    data[at : at + 4] = struct.pack(">I", 0x7FFFFFF0)
    assert _refusal(bytes(data)).code == "invalid_image_format"


@pytest.mark.parametrize(
    "ihdr",
    [
        _ihdr(depth=3),  # no colour type has 3-bit samples
        _ihdr(color=2, depth=4),  # truecolour needs 8 or 16
        _ihdr(color=3, depth=16),  # palette stops at 8
        _ihdr(color=5),  # no such colour type
        _ihdr(compression=1),
        _ihdr(filtering=1),
        _ihdr(interlace=2),
        _ihdr()[:12],  # IHDR must be 13 bytes
    ],
    ids=["depth3", "rgb-depth4", "palette-depth16", "color5", "compr", "filter", "interl", "short"],
)
def test_bad_ihdr_values_are_invalid_image_format(
    make_png: Callable[..., bytes], ihdr: bytes
) -> None:
    """An IHDR with values the PNG spec forbids is invalid_image_format."""
    assert _refusal(make_png(16, ihdr=ihdr)).code == "invalid_image_format"


def test_not_square_is_invalid_image_dimensions(make_png: Callable[..., bytes]) -> None:
    """A 64x32 PNG is refused as invalid_image_dimensions, naming both sides."""
    error = _refusal(make_png(64, 32))
    assert error.code == "invalid_image_dimensions"
    assert "64x32" in error.message


def test_zero_width_is_invalid_image_dimensions(make_png: Callable[..., bytes]) -> None:
    """A PNG 0 pixels wide (and high) is refused as invalid_image_dimensions."""
    assert _refusal(make_png(0, 0)).code == "invalid_image_dimensions"


def test_zero_width_nonzero_height_is_invalid_image_dimensions(
    make_png: Callable[..., bytes],
) -> None:
    """A PNG 0 wide but 16 high is refused as invalid_image_dimensions."""
    assert _refusal(make_png(16, ihdr=_ihdr(width=0, height=16))).code == (
        "invalid_image_dimensions"
    )


def test_side_over_max_side_is_invalid_image_dimensions(make_png: Callable[..., bytes]) -> None:
    """A square PNG one pixel over the side ceiling is invalid_image_dimensions."""
    assert _refusal(make_png(65), max_side=64).code == "invalid_image_dimensions"


def test_side_equal_to_max_side_is_accepted(make_png: Callable[..., bytes]) -> None:
    """A square PNG exactly at the side ceiling is accepted."""
    assert check_png(make_png(64), max_side=64) == PngInfo(64, 64)


def test_huge_declared_sides_are_refused_without_decoding(make_png: Callable[..., bytes]) -> None:
    """A tiny file declaring 100000x100000 pixels (a bomb) is refused by the side ceiling."""
    bomb = make_png(16, ihdr=_ihdr(width=100_000, height=100_000))
    assert len(bomb) < 2000
    assert _refusal(bomb).code == "invalid_image_dimensions"


def test_image_of_exactly_4_mib_is_image_too_large(png_of_size: Callable[[int], bytes]) -> None:
    """An otherwise valid PNG of exactly 4 MiB is refused as image_too_large."""
    assert _refusal(png_of_size(MAX_IMAGE_BYTES)).code == "image_too_large"


def test_image_just_under_4_mib_is_accepted(png_of_size: Callable[[int], bytes]) -> None:
    """A valid PNG one byte under 4 MiB is accepted."""
    assert check_png(png_of_size(MAX_IMAGE_BYTES - 1), max_side=MAX_SIDE) == PngInfo(8, 8)


def test_a_png_with_many_chunks_below_the_cap_is_valid() -> None:
    """Thousands of small chunks (as some encoders write image data) stay accepted."""
    png = make_png(32)
    flooded = png[:33] + png_chunk(b"prVt", b"") * (MAX_CHUNKS - 10) + png[33:]
    assert check_png(flooded, max_side=4096) == PngInfo(32, 32)


def test_transparency_is_read_from_the_colour_type_or_a_trns_chunk() -> None:
    """An alpha channel (RGBA) or a tRNS chunk (a palette's or a colour key's transparency)
    is transparency; an RGB PNG without tRNS is opaque (an edit's mask needs some)."""
    rgb = make_png(8)
    assert not check_png(rgb, max_side=64).transparent
    assert check_png(make_png(8, alpha=True), max_side=64).transparent
    keyed = rgb[:33] + png_chunk(b"tRNS", b"\x00\x00\x00\x00\x00\x00") + rgb[33:]
    assert check_png(keyed, max_side=64).transparent
