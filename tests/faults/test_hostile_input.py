"""Property tests: whatever bytes arrive, the answer is a spec error or a valid forward.

Hypothesis drives the upload reader, the PNG checks and the whole endpoint with arbitrary
and mutated bodies, boundaries, part headers (huge ones, `filename*=`, duplicates),
duplicate and unknown fields, and hostile PNGs: truncated, bad CRCs, decompression bombs,
0 and 100000-pixel sides, APNG, interlaced, 16-bit, unknown chunks. The invariants:

- every answer is a 200, a 400 with a spec code or a 413, in OpenAI's shape, never a 5xx;
- the upstream is called for a 200 only, and what it gets is a PNG Pillow accepts;
- reading never holds more than a bounded multiple of the body cap.

`make soak` runs each property with many more examples (support/soak.py).
"""

# Either outcome is valid here, so the error is checked in `except`, not with pytest.raises.
# ruff: noqa: PT017

from __future__ import annotations

import asyncio
import io
import struct
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient
from support.config import ENV, USER_SECRET, auth, base_config
from support.fake_upstream import Received, images_response, parse_multipart
from support.pngs import PNG_SIGNATURE, apng, bomb, build_png, make_png, png_chunk
from support.soak import examples

from gateway.app import create_app
from gateway.auth.authenticator import pseudonym
from gateway.errors import GatewayError, InvalidRequest, RequestTooLarge
from gateway.multipart import MAX_BODY_BYTES, read_upload
from gateway.params import FIELDS, IMAGE_FIELD, parse_params
from gateway.png import MAX_IMAGE_BYTES, check_png
from gateway.settings.build import build_settings
from gateway.settings.config import parse_config

BOUNDARY = "hyp"
PNG = build_png(2, color=0)  # the smallest valid file: every byte of it matters
MAX_SIDE = 4096
ALICE_PSEUDONYM = pseudonym(USER_SECRET, "alice")
# The codes SPEC section 5 gives a bad upload.
UPLOAD_CODES = {
    "invalid_multipart",
    "request_too_large",
    "request_timeout",
    "missing_required_parameter",
    "invalid_type",
    "duplicate_parameter",
    "unknown_parameter",
    "invalid_image_format",
    "image_too_large",
    "invalid_image_dimensions",
    "integer_above_max_value",
    "integer_below_min_value",
    "invalid_value",
}


def runs(count: int, *, health: bool = True) -> settings:
    """Hypothesis settings for `count` examples (more in a soak), without a deadline."""
    checks = [HealthCheck.too_slow, HealthCheck.data_too_large] if health else list(HealthCheck)
    return settings(max_examples=examples(count), suppress_health_check=checks, deadline=None)


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _read(body: bytes | AsyncIterator[bytes], chunk: int = 4096, boundary: str = BOUNDARY) -> Any:
    stream = _chunks(body, chunk) if isinstance(body, bytes) else body
    return asyncio.run(
        read_upload(
            f"multipart/form-data; boundary={boundary}",
            stream,
            allowed=FIELDS,
            file_field=IMAGE_FIELD,
            timeout_seconds=5,
        )
    )


def _part(name: bytes, value: bytes, headers: bytes, boundary: str = BOUNDARY) -> bytes:
    return (
        b"--"
        + boundary.encode()
        + b'\r\nContent-Disposition: form-data; name="'
        + name
        + b'"'
        + headers
        + b"\r\n\r\n"
        + value
        + b"\r\n"
    )


# --- hostile PNGs -------------------------------------------------------------------------


def _idat_edit(png: bytes, edit: int) -> bytes:
    """`png` with one byte of its IDAT data flipped and the CRC made right again."""
    at = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[at - 4 : at])
    data = bytearray(png[at + 4 : at + 4 + length])
    if data:
        data[edit % len(data)] ^= 0x5A
    return png[: at - 4] + png_chunk(b"IDAT", bytes(data)) + png[at + 8 + length :]


def _insert_before_iend(png: bytes, chunk: bytes) -> bytes:
    at = png.rfind(b"IEND") - 4
    at = at if at >= 0 else len(png)  # IEND was cut off: add at the end
    return png[:at] + chunk + png[at:]


def _pillow_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (side, side), (1, 2, 3, 4)).save(out, format="PNG")
    return out.getvalue()


SIDES = st.sampled_from([0, 1, 2, 17, 64, 4097, 100_000, 2**31 - 1])
BASES = {
    "plain": lambda side: build_png(side),
    "interlaced": lambda side: build_png(side, interlace=1),
    "16-bit": lambda side: build_png(side, depth=16, color=6),
    "palette": lambda side: build_png(side, color=3, depth=4),
    "grey-1bit": lambda side: build_png(side, color=0, depth=1),
    "apng": lambda side: apng(side),
    "pillow": lambda side: _pillow_png(side),
}
CHUNK_TYPES = st.sampled_from(
    [
        b"tEXt",
        b"zTXt",
        b"iCCP",
        b"acTL",
        b"fcTL",
        b"fdAT",
        b"IHDR",
        b"IDAT",
        b"IEND",
        b"ABCD",
        b"prVt",
    ]
)


@st.composite
def hostile_pngs(draw: st.DrawFn) -> bytes:
    """A PNG of any kind and size, then edited: a chunk added (well framed or not), a byte
    of image data changed under a right CRC, a CRC broken, or the file cut short."""
    kind = draw(st.sampled_from([*BASES, "bomb"]))
    if kind == "bomb":
        png = bomb(draw(SIDES), height=draw(st.one_of(st.none(), SIDES)))
    else:
        png = BASES[kind](draw(st.sampled_from([1, 2, 3, 16, 33])))
    for _ in range(draw(st.integers(0, 3))):
        edit = draw(st.sampled_from(["chunk", "idat", "crc", "cut", "none"]))
        if edit == "chunk":
            data = draw(st.one_of(st.binary(max_size=64), st.just(b"\0" * 70_000)))
            crc = draw(st.one_of(st.none(), st.integers(0, 2**32 - 1)))
            png = _insert_before_iend(png, png_chunk(draw(CHUNK_TYPES), data, crc))
        elif edit == "idat" and b"IDAT" in png:
            png = _idat_edit(png, draw(st.integers(0, 1000)))
        elif edit == "crc":
            at = draw(st.integers(0, max(0, len(png) - 4)))
            png = png[:at] + bytes(b ^ 0xFF for b in png[at : at + 4]) + png[at + 4 :]
        elif edit == "cut":
            png = png[: draw(st.integers(0, len(png)))]
    return png


@runs(600)
@given(hostile_pngs())
def test_hostile_pngs_are_refused_with_an_image_code_or_are_valid(png: bytes) -> None:
    """Whatever was done to a PNG, it is refused with an image code, or it is a square PNG
    within the ceiling that Pillow reads as one (so it is safe to forward)."""
    try:
        info = check_png(png, max_side=MAX_SIDE)
    except InvalidRequest as exc:
        event(exc.code or "")
        assert exc.param == "image" and exc.status == 400
        assert exc.code in {"invalid_image_format", "invalid_image_dimensions", "image_too_large"}
        return
    event("accepted")
    assert 0 < info.width == info.height <= MAX_SIDE
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (info.width, info.width)
        image.verify()  # every chunk's framing and CRC, as a second implementation sees them


@runs(300)
@given(
    st.integers(min_value=0, max_value=len(PNG) - 1),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=len(PNG)),
)
def test_mutated_and_truncated_pngs_are_refused_or_accepted_cleanly(
    at: int, byte: int, cut: int
) -> None:
    """Flipping any byte or truncating anywhere gives PngInfo or an image-coded 400."""
    mutated = (PNG[:at] + bytes([byte]) + PNG[at + 1 :])[: max(cut, 0) or len(PNG)]
    try:
        info = check_png(mutated, max_side=MAX_SIDE)
    except InvalidRequest as exc:
        assert exc.param == "image"
        assert exc.code in {"invalid_image_format", "invalid_image_dimensions", "image_too_large"}
    else:
        assert info.width == info.height > 0


@runs(200)
@given(st.binary(max_size=512))
def test_random_bytes_behind_a_png_signature_are_handled(tail: bytes) -> None:
    """A PNG signature followed by garbage is refused as a bad image, never a crash."""
    try:
        check_png(PNG_SIGNATURE + tail, max_side=MAX_SIDE)
    except InvalidRequest as exc:
        assert exc.param == "image"


# --- hostile multipart --------------------------------------------------------------------

names = st.sampled_from(
    [b"image", b"n", b"size", b"model", b"user", b"prompt", b"mask", b"", b'a"b', b"x" * 300]
)
extra_headers = st.sampled_from(
    [
        b"",
        b'; filename="x.png"',
        b"; filename*=UTF-8''x.png",
        b"; filename*=UTF-8''%E2%80%AE%00evil.png",
        b"\r\nContent-Type: image/png",
        b"\r\nContent-Type: text/plain; charset=utf-8",
        b'\r\nContent-Disposition: form-data; name="n"',
        b"\r\nX-Huge: " + b"h" * 5000,
        b"\r\nX-Huger: " + b"h" * 70_000,
        b'; filename="\r\n',
        b"\r\nNo-Colon-Here",
    ]
)
values = st.one_of(
    st.binary(max_size=64),
    st.just(PNG),
    st.sampled_from([b"2", b"10", b"11", b"0", b"256x256", b"url", b"b64_json", b"dall-e-3"]),
)


@runs(300)
@given(
    st.lists(st.tuples(names, values, extra_headers), max_size=6),
    st.booleans(),
    st.integers(min_value=1, max_value=97),
)
def test_any_well_framed_form_is_read_or_refused_cleanly(
    parts: list[tuple[bytes, bytes, bytes]], closed: bool, chunk: int
) -> None:
    """Duplicate, unknown, odd and oversized parts give an Upload or an OpenAI-coded error."""
    body = b"".join(_part(*part) for part in parts) + (b"--hyp--\r\n" if closed else b"")
    try:
        upload = _read(body, chunk)
    except GatewayError as exc:
        assert exc.status in (400, 413) and exc.code in UPLOAD_CODES
        return
    try:
        parse_params(upload, models=("dall-e-2",), max_side=MAX_SIDE)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.code in UPLOAD_CODES


@runs(300)
@given(st.binary(max_size=2048), st.integers(min_value=1, max_value=64))
def test_arbitrary_bodies_never_crash_the_reader(body: bytes, chunk: int) -> None:
    """Random bytes as a multipart body are an error with a code, never an exception."""
    try:
        _read(body, chunk)
    except GatewayError as exc:
        assert exc.status in (400, 413) and exc.code in UPLOAD_CODES


# RFC 2046: 1 to 70 of these, not ending in a space.
BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
boundaries = st.text(alphabet=BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" "))


@runs(200)
@given(boundaries, st.permutations(["image", "n", "size", "response_format"]), st.integers(1, 50))
def test_any_rfc_boundary_and_field_order_reads_a_valid_form(
    boundary: str, order: list[str], chunk: int
) -> None:
    """A valid form reads back exactly, whatever legal boundary and field order it uses."""
    assume(boundary.encode() not in PNG)
    values_ = {"image": PNG, "n": b"3", "size": b"512x512", "response_format": b"b64_json"}
    headers = {"image": b'; filename="a.png"'}
    body = b"".join(
        _part(name.encode(), values_[name], headers.get(name, b""), boundary) for name in order
    )
    upload = _read(body + f"--{boundary}--\r\n".encode(), chunk, f'"{boundary}"')
    request = parse_params(upload, models=("dall-e-2",), max_side=MAX_SIDE)
    assert (request.image, request.n, request.size) == (PNG, 3, "512x512")


async def _inflated(prefix: bytes, total: int) -> AsyncIterator[bytes]:
    """`prefix`, then zero bytes in 64 KiB chunks until `total` bytes were sent."""
    yield prefix
    sent = len(prefix)
    while sent < total:
        yield bytes(65536)
        sent += 65536


@runs(12)
@given(
    st.sampled_from(
        [
            _part(b"image", PNG[:20], b'; filename="a.png"')[:-2],  # an image that never ends
            _part(b"n", b"2", b"")[:-2],  # a text field that never ends
            b"",  # no framing at all
        ]
    ),
    st.integers(MAX_BODY_BYTES // 2, 3 * MAX_BODY_BYTES),
)
def test_reading_holds_a_bounded_amount_of_memory_whatever_is_sent(
    prefix: bytes, total: int
) -> None:
    """However large the body, the reader holds at most about two image caps (the parts it
    keeps, and their join) and stops at the body cap."""
    tracemalloc.start()
    try:
        _read(_inflated(prefix, total))
    except GatewayError as exc:
        assert exc.code in UPLOAD_CODES
        if total > MAX_BODY_BYTES:
            assert isinstance(exc, RequestTooLarge) or exc.code != "request_too_large"
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 2 * MAX_IMAGE_BYTES + 2 * 1024 * 1024


# --- the whole endpoint -------------------------------------------------------------------


class CountingUpstream(httpx.AsyncBaseTransport):
    """An upstream that answers every call with as many images as asked, and records it."""

    def __init__(self) -> None:
        self.calls: list[Received] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        received = Received("POST", request.url.path, dict(request.headers))
        received.fields, received.files, _ = parse_multipart(request.headers["content-type"], body)
        self.calls.append(received)
        return httpx.Response(200, json=images_response(received))


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[TestClient, CountingUpstream]]:
    """The app in process, its upstream a counting transport (no quotas, no cache)."""
    upstream = CountingUpstream()
    settings_ = build_settings(parse_config(base_config("http://upstream.invalid/v1")), ENV)
    with TestClient(create_app(settings_, upstream_transport=upstream)) as client:
        yield client, upstream


good_images = st.sampled_from(
    [make_png(16), build_png(8, interlace=1), build_png(8, depth=16, color=4), apng(8)]
)
image_values = st.one_of(good_images, hostile_pngs(), st.binary(max_size=256))
good_fields = st.fixed_dictionaries(
    {},
    optional={
        "n": st.sampled_from(["1", "2", "10"]),
        "size": st.sampled_from(["256x256", "512x512", "1024x1024"]),
        "response_format": st.sampled_from(["url", "b64_json"]),
        "model": st.just("dall-e-2"),
        "user": st.text(max_size=40),
    },
)
any_fields = st.fixed_dictionaries(
    {},
    optional={
        "n": st.sampled_from(["1", "10", "11", "0", "-1", "+2", "2.0", " 2", "٣", "9" * 40]),
        "size": st.sampled_from(["256x256", "1792x1024", "", "256X256"]),
        "response_format": st.sampled_from(["url", "URL", "json"]),
        "model": st.sampled_from(["dall-e-2", "dall-e-3", "gpt-image-1"]),
        "user": st.text(max_size=40),
        "prompt": st.just("an unknown field"),
    },
)
image_headers = st.sampled_from(
    [
        b'; filename="image.png"',
        b"; filename*=UTF-8''x.png",
        b"; filename*=UTF-8''%E2%80%AE%00evil.png",
        b"\r\nContent-Type: application/octet-stream",
        b"\r\nX-Huge: " + b"h" * 5000,
        b"",  # no filename, no type: only the PNG signature says it is a file
    ]
)
content_types = st.sampled_from(
    [
        "multipart/form-data; boundary={q}",
        "multipart/form-data; boundary={b}",  # unquoted, even if it needs quotes
        "Multipart/Form-Data; charset=utf-8; boundary={q}",
        "multipart/form-data",
        "multipart/mixed; boundary={q}",
        "application/json",
        "",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, str], bytes | list[bytes]]:
    """A variations request as anyone might send it: headers and a body (bytes or chunks).
    Half are well formed apart from the image (so the PNG checks and the forward are
    reached); the rest break the framing, the fields or the content type as well."""
    boundary = draw(boundaries)
    wild = draw(st.booleans())
    image = draw(st.one_of(st.none(), image_values) if wild else image_values)
    fields = draw(any_fields if wild else good_fields)
    parts = [
        _part(name.encode(), value.encode("utf-8", "replace"), b"", boundary)
        for name, value in fields.items()
    ]
    if image is not None:
        part = _part(b"image", image, draw(image_headers), boundary)
        parts.insert(draw(st.integers(0, len(parts))), part)
    if wild and parts and draw(st.booleans()):  # the same field twice
        parts.append(draw(st.sampled_from(parts)))
    closed = not wild or draw(st.booleans())
    body = b"".join(parts) + (f"--{boundary}--\r\n".encode() if closed else b"")
    content_type = draw(content_types) if wild else "multipart/form-data; boundary={q}"
    headers = {**auth(), "content-type": content_type.format(b=boundary, q=f'"{boundary}"')}
    if draw(st.booleans()):
        size = draw(st.integers(1, 4096))
        return headers, [body[i : i + size] for i in range(0, len(body), size)]
    return headers, body


@runs(400, health=False)
@given(requests())
def test_whatever_is_sent_the_answer_is_a_spec_error_or_a_valid_forward(
    endpoint: tuple[TestClient, CountingUpstream], request_: tuple[dict[str, str], Any]
) -> None:
    """Every answer is a 200 or a spec-coded 400/413 in OpenAI's shape, never a 5xx; the
    upstream is called for the 200s only, with a PNG Pillow accepts and allowed values."""
    client, upstream = endpoint
    headers, body = request_
    before = len(upstream.calls)
    response = client.post("/v1/images/variations", headers=headers, content=body)
    assert response.headers["content-type"] == "application/json"
    calls = upstream.calls[before:]
    event(f"{response.status_code} {response.json().get('error', {}).get('code', 'forwarded')}")
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert response.status_code in (400, 413) and error["code"] in UPLOAD_CODES, error
        assert calls == [], "an invalid request reached the upstream"
        return
    [call] = calls
    image = call.files["image"][2]
    with Image.open(io.BytesIO(image)) as opened:
        assert opened.format == "PNG" and opened.width == opened.height <= MAX_SIDE
        opened.verify()
    check_png(image, max_side=MAX_SIDE)  # what was forwarded is what was checked
    assert call.fields["model"] == "dall-e-2"
    assert 1 <= int(call.fields["n"]) <= 10 and call.fields["n"].isdigit()
    assert call.fields["size"] in ("256x256", "512x512", "1024x1024")
    assert call.fields["response_format"] in ("url", "b64_json")
    assert call.fields["user"] == ALICE_PSEUDONYM, "the caller chose its upstream user"
