"""Shared builders for the unit tests: PNG files, multipart bodies, and a chunked reader.

They are fixtures returning plain callables, so that no test module imports another and the
`tests` tree need not be a package; the records they hand out live in `support.forms`, where
tests import them to annotate their parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.forms import CountingStream, Part, multipart_body, read
from support.pngs import build_png as make_png
from support.pngs import png_chunk

from gateway.multipart import Upload


def png_of_size(total: int) -> bytes:
    """A valid 8x8 PNG padded with a private ancillary chunk to exactly `total` bytes."""
    base = make_png(8)
    padding = png_chunk(b"pdDg", b"\x00" * (total - len(base) - 12))
    assert len(base) + len(padding) == total
    return make_png(8, extra=padding)


@pytest.fixture(name="make_png")
def _make_png() -> Callable[..., bytes]:
    """The PNG builder: `make_png(width, height, depth=, color=, interlace=, ihdr=, ...)`."""
    return make_png


@pytest.fixture(name="png_chunk")
def _png_chunk() -> Callable[..., bytes]:
    """The PNG chunk framer: `png_chunk(kind, data, crc=None)`."""
    return png_chunk


@pytest.fixture(name="png_of_size")
def _png_of_size() -> Callable[[int], bytes]:
    """A valid PNG of exactly the given number of bytes."""
    return png_of_size


@pytest.fixture
def valid_png() -> bytes:
    """A small valid square RGB PNG (16x16)."""
    return make_png(16)


@pytest.fixture(name="part")
def _part() -> type[Part]:
    """The multipart part record: `part(name, value, filename=None, content_type=None)`."""
    return Part


@pytest.fixture(name="multipart_body")
def _multipart_body() -> Callable[..., bytes]:
    """The multipart body builder: `multipart_body(parts, boundary=..., close=True)`."""
    return multipart_body


@pytest.fixture(name="read_body")
def _read_body() -> Callable[..., Upload]:
    """`read_upload` run to completion: `read_body(body, chunk_size=, content_type=, ...)`."""
    return read


@pytest.fixture(name="counting_stream")
def _counting_stream() -> type[CountingStream]:
    """An async chunk iterator that counts the chunks pulled from it."""
    return CountingStream
