"""Shared builders for the unit tests: PNG files, multipart bodies, and a chunked reader.

They are fixtures returning plain callables, so that no test module imports another and the
`tests` tree need not be a package.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import pytest
from support.pngs import build_png as make_png
from support.pngs import png_chunk

from gateway.multipart import Upload, read_upload
from gateway.params import FIELDS, IMAGE_FIELD


def png_of_size(total: int) -> bytes:
    """A valid 8x8 PNG padded with a private ancillary chunk to exactly `total` bytes."""
    base = make_png(8)
    padding = png_chunk(b"pdDg", b"\x00" * (total - len(base) - 12))
    assert len(base) + len(padding) == total
    return make_png(8, extra=padding)


@dataclass(frozen=True)
class Part:
    """One multipart part as a client would write it."""

    name: str | None
    value: bytes
    filename: str | None = None
    content_type: str | None = None


BOUNDARY = "----gw-test-boundary-7MA4YWxk"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart_body(parts: Sequence[Part], boundary: str = BOUNDARY, *, close: bool = True) -> bytes:
    """A multipart/form-data body; `close=False` leaves out the closing boundary."""
    out = bytearray()
    for part in parts:
        disposition = "form-data"
        if part.name is not None:
            disposition += f'; name="{part.name}"'
        if part.filename is not None:
            disposition += f'; filename="{part.filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if part.content_type is not None:
            out += f"Content-Type: {part.content_type}\r\n".encode()
        out += b"\r\n" + part.value + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def split(body: bytes, size: int | None) -> list[bytes]:
    """`body` in chunks of `size` bytes (`None`: one chunk)."""
    if size is None:
        return [body]
    return [body[i : i + size] for i in range(0, len(body), size)]


class CountingStream:
    """An async iterator over chunks that counts how many were pulled from it."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)
        self.pulled = 0

    def __aiter__(self) -> CountingStream:
        return self

    async def __anext__(self) -> bytes:
        if self.pulled >= len(self._chunks):
            raise StopAsyncIteration
        self.pulled += 1
        return self._chunks[self.pulled - 1]


def read(
    body: bytes | AsyncIterator[bytes],
    *,
    chunk_size: int | None = None,
    content_type: str | None = CONTENT_TYPE,
    timeout_seconds: float = 30.0,
) -> Upload:
    """Run `read_upload` over `body` (bytes, split into chunks, or a ready stream)."""
    stream = CountingStream(split(body, chunk_size)) if isinstance(body, bytes) else body
    return asyncio.run(
        read_upload(
            content_type,
            stream,
            allowed=FIELDS,
            file_field=IMAGE_FIELD,
            timeout_seconds=timeout_seconds,
        )
    )


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
