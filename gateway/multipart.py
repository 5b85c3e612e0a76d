"""Bounded, streaming reading of the multipart upload.

The body is fed from the ASGI receive loop straight into python-multipart's streaming
parser: nothing is spooled to disk, the image's bytes are copied once (into the image),
they are hashed as they arrive when the caller hands a hasher (only a request whose answer
may be cached is hashed at all), and a body over the cap is cut off the moment it passes
it (413) rather than buffered. An error found
mid-body (an unknown field, say) is remembered and the rest of the body is drained up to
the cap before answering, so an SDK still writing its upload reads a clean 400 instead of
a reset connection.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.errors import InvalidRequest, RequestTimeout, RequestTooLarge
from gateway.png import MAX_IMAGE_BYTES

BODY_SLACK = 64 * 1024  # room for the text fields and the multipart framing
MAX_BODY_BYTES = MAX_IMAGE_BYTES + BODY_SLACK
MAX_TEXT_BYTES = 1024


def _too_large(max_body_bytes: int = MAX_BODY_BYTES) -> RequestTooLarge:
    if max_body_bytes != MAX_BODY_BYTES:
        return RequestTooLarge(
            f"The request body is too large: this endpoint reads at most {max_body_bytes} bytes."
        )
    # The same limit the image check states, so a 5 MB and a 4.2 MB upload read alike.
    return RequestTooLarge(
        f"The request body is too large: the image must be less than 4 MB, and the whole "
        f"multipart body at most {MAX_BODY_BYTES} bytes (the image plus 64 KiB of fields)."
    )


def _invalid_multipart(why: str) -> InvalidRequest:
    return InvalidRequest(
        f"Could not parse multipart form: {why}.", code="invalid_multipart", param=None
    )


class Hasher(Protocol):
    """An incremental hash of the image (`hashlib`'s and `blake3`'s objects are)."""

    name: str

    def update(self, data: bytes | memoryview, /) -> object:
        """Hash `data` next."""

    def hexdigest(self) -> str:
        """The digest of everything hashed so far."""


@dataclass(frozen=True)
class FilePart:
    """One part of a file field of several (`read_upload`'s `files`), in arrival order."""

    name: str
    data: bytes  # cut short past the reader's per-file bound: `size` tells
    size: int
    is_file: bool
    digest: str = ""  # "<hash name>:<hex digest>" of `data`; "" when not hashed


@dataclass
class Upload:
    """What the caller sent: text fields by name, and the image part, if any."""

    fields: dict[str, str] = field(default_factory=dict)
    image: bytes | None = None
    image_size: int = 0
    image_is_file: bool = False
    # "<hash name>:<hex digest>" of the image (of its first MAX_IMAGE_BYTES when oversize);
    # "" when no hasher was given.
    image_digest: str = ""
    files: list[FilePart] = field(default_factory=list)  # the `files` fields' parts


@dataclass
class _Part:
    name: str
    is_file: bool
    chunks: list[bytes | memoryview] = field(default_factory=list)
    size: int = 0
    hasher: Hasher | None = None  # a part of a `files` field: its own hash


class FileFields(NamedTuple):
    """File fields besides the one image: which, which of them may repeat (`image[]`), how
    many bytes of each part are kept, and a fresh hasher for each part (None: unhashed)."""

    names: frozenset[str]
    repeated: frozenset[str] = frozenset()
    max_bytes: int = MAX_IMAGE_BYTES
    new_hasher: Callable[[], Hasher] | None = None
    # Text fields longer than MAX_TEXT_BYTES may be, and their bound (an edit's prompt).
    long_text: Mapping[str, int] = {}


def _describe_part(
    disposition: bytes | None, content_type: bytes | None
) -> tuple[str, bool] | None:
    """A part's field name and whether it is a file, from its headers; None if it has no name."""
    kind, options = parse_options_header(disposition)
    raw_name = options.get(b"name")
    if kind != b"form-data" or raw_name is None:
        return None
    has_filename = b"filename" in options or b"filename*" in options
    is_file = has_filename or parse_options_header(content_type)[0] not in (b"", b"text/plain")
    return raw_name.decode("utf-8", "replace"), is_file


# The SDKs send the same few part headers on every request: their parse is remembered.
_describe_known = functools.lru_cache(maxsize=256)(_describe_part)
_MAX_REMEMBERED = 256  # bytes of a header worth remembering; longer ones are parsed each time


def _describe(disposition: bytes | None, content_type: bytes | None) -> tuple[str, bool] | None:
    if len(disposition or b"") + len(content_type or b"") > _MAX_REMEMBERED:
        return _describe_part(disposition, content_type)
    return _describe_known(disposition, content_type)


class _FormCollector:
    """python-multipart callbacks that build an `Upload`, enforcing the field rules."""

    def __init__(
        self,
        allowed: frozenset[str],
        file_field: str | None,
        hasher: Hasher | None,
        files: FileFields | None = None,
    ) -> None:
        self.allowed, self.file_field = allowed, file_field
        self.files = files or FileFields(frozenset())
        self.upload = Upload()
        self.ended = False
        self._seen: set[str] = set()
        self._headers: dict[bytes, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._part: _Part | None = None
        self._hash = hasher

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers.clear()
        self._part = None

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        described = _describe(
            self._headers.get(b"content-disposition"), self._headers.get(b"content-type")
        )
        if described is None:
            raise _invalid_multipart("a part has no form-data name")
        name, is_file = described
        if name not in self.allowed:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {name[:64]}",
                code="unknown_parameter",
                param=name[:64],
            )
        if name in self._seen and name not in self.files.repeated:
            raise InvalidRequest(
                f"The '{name}' parameter was given more than once.",
                code="duplicate_parameter",
                param=name,
            )
        self._seen.add(name)
        self._part = _Part(name, is_file)
        if name in self.files.names and self.files.new_hasher is not None:
            self._part.hasher = self.files.new_hasher()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is None:
            return
        part.size += end - start
        if part.name == self.file_field:
            if part.size <= MAX_IMAGE_BYTES:  # past that only the size matters
                # A view, not a copy: the parser hands over immutable bytes (the received
                # chunk, or its boundary), so the image is copied once, when it is joined.
                chunk = memoryview(data)[start:end] if type(data) is bytes else data[start:end]
                if self._hash is not None:
                    self._hash.update(chunk)
                part.chunks.append(chunk)
        elif part.name in self.files.names:
            if part.size <= self.files.max_bytes:
                chunk = memoryview(data)[start:end] if type(data) is bytes else data[start:end]
                if part.hasher is not None:
                    part.hasher.update(chunk)
                part.chunks.append(chunk)
        elif part.size > self.files.long_text.get(part.name, MAX_TEXT_BYTES):
            raise InvalidRequest(
                f"The '{part.name}' parameter is too long.", code="invalid_value", param=part.name
            )
        else:
            part.chunks.append(data[start:end])

    def _part_end(self) -> None:
        part, self._part = self._part, None
        if part is None:
            return
        value = b"".join(part.chunks)
        if part.name == self.file_field:
            self.upload.image = value  # truncated when oversize: image_size tells
            self.upload.image_size = part.size
            self.upload.image_is_file = part.is_file
            if self._hash is not None:
                self.upload.image_digest = f"{self._hash.name}:{self._hash.hexdigest()}"
        elif part.name in self.files.names:
            digest = "" if part.hasher is None else f"{part.hasher.name}:{part.hasher.hexdigest()}"
            self.upload.files.append(FilePart(part.name, value, part.size, part.is_file, digest))
        else:
            self.upload.fields[part.name] = value.decode("utf-8", "replace")

    def _end(self) -> None:
        self.ended = True


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a Content-Type header; raises `InvalidRequest` otherwise."""
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise _invalid_multipart("Content-Type must be multipart/form-data with a boundary")
    return boundary


def _declared(content_length: str | None) -> int | None:
    """The declared length, if it is a number; anything over the cap counts as cap + 1."""
    if not content_length or not (content_length.isascii() and content_length.isdigit()):
        return None  # absent or not a number: the streamed count is the check
    digits = content_length.lstrip("0")
    # Compare lengths first: int() refuses strings of thousands of digits.
    if len(digits) > len(str(MAX_BODY_BYTES)):
        return MAX_BODY_BYTES + 1
    return min(int(digits or "0"), MAX_BODY_BYTES + 1)


def check_declared_length(content_length: str | None) -> None:
    """Refuse, before reading, a body whose declared length is over the cap."""
    declared = _declared(content_length)
    if declared is not None and declared > MAX_BODY_BYTES:
        raise _too_large()


def length_check(max_body_bytes: int) -> Callable[[str | None], None]:
    """`check_declared_length` for an endpoint that reads at most `max_body_bytes`."""

    def check(content_length: str | None) -> None:
        if not content_length or not (content_length.isascii() and content_length.isdigit()):
            return
        digits = content_length.lstrip("0")
        if len(digits) > len(str(max_body_bytes)) or int(digits or "0") > max_body_bytes:
            raise _too_large(max_body_bytes)

    return check


def body_bound(content_length: str | None) -> int:
    """The most bytes the body can take in memory: its declared length, else the cap."""
    declared = _declared(content_length)
    return MAX_BODY_BYTES if declared is None else min(declared, MAX_BODY_BYTES)


async def read_upload(
    content_type: str | None,
    stream: AsyncIterator[bytes],
    *,
    allowed: frozenset[str],
    file_field: str | None,
    timeout_seconds: float,
    hasher: Hasher | None = None,
    files: FileFields | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Upload:
    """Read the whole multipart body from `stream`, within the byte cap and the deadline;
    the image is fed to `hasher` as it arrives (None: it is not hashed at all), and each
    part of the `files` fields to a hasher of its own (`Upload.files`).

    Raises `InvalidRequest` (malformed multipart, unknown or duplicate field),
    `RequestTooLarge` (more than `max_body_bytes`) or `RequestTimeout`.
    """
    collector = _FormCollector(allowed, file_field, hasher, files)
    parser = _parser(boundary_of(content_type), collector)
    error: InvalidRequest | None = None
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in _capped(stream, max_body_bytes):
                if error is None:
                    error = _feed(parser, chunk)
    except TimeoutError:
        raise RequestTimeout() from None
    if error is not None:
        raise error
    if not collector.ended:
        raise _invalid_multipart("the body ended before the closing boundary")
    return collector.upload


def _parser(boundary: bytes, collector: _FormCollector) -> MultipartParser:
    """The streaming parser; a boundary it refuses (over 256 bytes, say) is the caller's 400."""
    try:
        return MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    except (FormParserError, ValueError):
        raise _invalid_multipart("the boundary is not usable") from None


async def _capped(
    stream: AsyncIterator[bytes], max_body_bytes: int = MAX_BODY_BYTES
) -> AsyncIterator[bytes]:
    """`stream`'s chunks; raises `RequestTooLarge` the moment they pass `max_body_bytes`."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > max_body_bytes:
            raise _too_large(max_body_bytes)
        yield chunk


async def read_body(
    stream: AsyncIterator[bytes], *, max_body_bytes: int, timeout_seconds: float
) -> bytes:
    """The whole of a small body (a JSON request), within the byte cap and the deadline;
    raises `RequestTooLarge` or `RequestTimeout`."""
    chunks = []
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in _capped(stream, max_body_bytes):
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout() from None
    return b"".join(chunks)


def _feed(parser: MultipartParser, chunk: bytes) -> InvalidRequest | None:
    try:
        parser.write(chunk)
    except InvalidRequest as exc:
        return exc
    except FormParserError:  # every error the parser raises, MultipartParseError among them
        return _invalid_multipart("malformed body")
    return None
