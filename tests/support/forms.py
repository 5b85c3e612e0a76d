"""Multipart bodies as clients write them, and `read_upload` run over them in chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from gateway.cache import input_hasher
from gateway.multipart import Hasher, Upload, read_upload
from gateway.params import FIELDS, IMAGE_FIELD


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
    new_hasher: Callable[[], Hasher] | None = input_hasher,
) -> Upload:
    """Run `read_upload` over `body` (bytes, split into chunks, or a ready stream), hashing
    the image with a hasher from `new_hasher` (None: no hasher, as with the cache off)."""
    stream = CountingStream(split(body, chunk_size)) if isinstance(body, bytes) else body
    return asyncio.run(
        read_upload(
            content_type,
            stream,
            allowed=FIELDS,
            file_field=IMAGE_FIELD,
            timeout_seconds=timeout_seconds,
            hasher=new_hasher() if new_hasher else None,
        )
    )
