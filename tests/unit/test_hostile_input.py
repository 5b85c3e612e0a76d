"""Property tests: whatever bytes arrive, the upload reader and PNG checks answer with a
spec error or a valid result, never an unexpected exception.
"""

# Either outcome is valid here, so the error is checked in `except`, not with pytest.raises.
# ruff: noqa: PT017

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.pngs import build_png

from gateway.errors import GatewayError, InvalidRequest
from gateway.multipart import read_upload
from gateway.params import FIELDS, IMAGE_FIELD, parse_params
from gateway.png import check_png

BOUNDARY = "hyp"
PNG = build_png(2, color=0)  # the smallest valid file: every byte of it matters


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _read(body: bytes, chunk: int) -> object:
    return asyncio.run(
        read_upload(
            f"multipart/form-data; boundary={BOUNDARY}",
            _chunks(body, chunk),
            allowed=FIELDS,
            file_field=IMAGE_FIELD,
            timeout_seconds=5,
        )
    )


def _part(name: bytes, value: bytes, headers: bytes) -> bytes:
    return (
        b"--"
        + BOUNDARY.encode()
        + b'\r\nContent-Disposition: form-data; name="'
        + name
        + b'"'
        + headers
        + b"\r\n\r\n"
        + value
        + b"\r\n"
    )


names = st.sampled_from([b"image", b"n", b"size", b"model", b"user", b"prompt", b"", b'a"b'])
extra_headers = st.sampled_from(
    [
        b"",
        b'; filename="x.png"',
        b"; filename*=UTF-8''x.png",
        b"\r\nContent-Type: image/png",
        b"\r\nX-Huge: " + b"h" * 5000,
        b'; filename="\r\n',
    ]
)
values = st.one_of(
    st.binary(max_size=64), st.just(PNG), st.sampled_from([b"2", b"256x256", b"url"])
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.tuples(names, values, extra_headers), max_size=6),
    st.booleans(),
    st.integers(min_value=1, max_value=97),
)
def test_any_well_framed_form_is_read_or_refused_cleanly(parts, closed, chunk) -> None:
    """Duplicate, unknown, odd and oversized parts give an Upload or an OpenAI-coded error."""
    body = b"".join(_part(*part) for part in parts) + (b"--hyp--\r\n" if closed else b"")
    try:
        upload = _read(body, chunk)
    except GatewayError as exc:
        assert exc.status in (400, 413) and exc.code
        return
    try:
        parse_params(upload, models=("dall-e-2",), max_side=4096)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.code


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.integers(min_value=1, max_value=64))
def test_arbitrary_bodies_never_crash_the_reader(body, chunk) -> None:
    """Random bytes as a multipart body are an error with a code, never an exception."""
    try:
        _read(body, chunk)
    except GatewayError as exc:
        assert exc.status in (400, 413) and exc.code


@settings(max_examples=500, deadline=None)
@given(
    st.integers(min_value=0, max_value=len(PNG) - 1),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=len(PNG)),
)
def test_mutated_and_truncated_pngs_are_refused_or_accepted_cleanly(at, byte, cut) -> None:
    """Flipping any byte or truncating anywhere gives PngInfo or an image-coded 400."""
    mutated = (PNG[:at] + bytes([byte]) + PNG[at + 1 :])[: max(cut, 0) or len(PNG)]
    try:
        info = check_png(mutated, max_side=4096)
    except InvalidRequest as exc:
        assert exc.param == "image"
        assert exc.code in {"invalid_image_format", "invalid_image_dimensions", "image_too_large"}
    else:
        assert info.width == info.height > 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_behind_a_png_signature_are_handled(tail) -> None:
    """A PNG signature followed by garbage is refused as a bad image, never a crash."""
    try:
        check_png(b"\x89PNG\r\n\x1a\n" + tail, max_side=4096)
    except InvalidRequest as exc:
        assert exc.param == "image"
