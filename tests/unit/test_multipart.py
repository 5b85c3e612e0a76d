"""Streaming reading of the upload: field rules, malformed bodies, the byte cap, the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import blake3
import pytest
from support.forms import CountingStream, Part

from gateway.errors import InvalidRequest, RequestTimeout, RequestTooLarge
from gateway.multipart import (
    MAX_BODY_BYTES,
    MAX_TEXT_BYTES,
    Upload,
    boundary_of,
    check_declared_length,
)
from gateway.params import parse_params
from gateway.png import MAX_IMAGE_BYTES

CHUNK_SIZES = pytest.mark.parametrize("chunk_size", [1, 7, None], ids=["1B", "7B", "whole"])


@pytest.fixture
def sdk_parts(part: type[Part], valid_png: bytes) -> list[Part]:
    """The parts an SDK sends: the image as a file and every text field."""
    return [
        part("image", valid_png, filename="image.png", content_type="image/png"),
        part("model", b"dall-e-2"),
        part("n", b"2"),
        part("size", b"256x256"),
        part("response_format", b"b64_json"),
        part("user", b"someone"),
    ]


def _invalid(
    read_body: Callable[..., Upload], body: bytes | AsyncIterator[bytes], **kwargs: object
) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        read_body(body, **kwargs)
    return caught.value


@CHUNK_SIZES
def test_reads_every_field_and_the_image(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    valid_png: bytes,
    chunk_size: int | None,
) -> None:
    """Text fields come back by name and the image bytes intact, however the body is chunked."""
    upload = read_body(multipart_body(sdk_parts), chunk_size=chunk_size)
    assert upload.fields == {
        "model": "dall-e-2",
        "n": "2",
        "size": "256x256",
        "response_format": "b64_json",
        "user": "someone",
    }
    assert upload.image == valid_png
    assert upload.image_size == len(valid_png)
    assert upload.image_is_file is True


@CHUNK_SIZES
def test_image_digest_is_the_blake3_of_the_image_bytes(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    part: type[Part],
    chunk_size: int | None,
) -> None:
    """The streamed digest is BLAKE3 of the image bytes alone, named by its hash."""
    image = bytes(range(256)) * 40  # any bytes: the hash must not depend on the framing
    body = multipart_body([part("n", b"1"), part("image", image, filename="x.png")])
    upload = read_body(body, chunk_size=chunk_size)
    assert upload.image_digest == "blake3:" + blake3.blake3(image).hexdigest()


@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4), (4, 3, 2, 1, 0), (2, 0, 4, 1, 3)])
def test_fields_in_any_order(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    valid_png: bytes,
    order: tuple[int, ...],
) -> None:
    """Image first (node), last (python) or in the middle (Go sorts): same upload."""
    upload = read_body(multipart_body([sdk_parts[i] for i in order]), chunk_size=7)
    assert upload.image == valid_png
    assert upload.fields["n"] == "2"
    assert upload.fields["size"] == "256x256"


@pytest.mark.parametrize(
    "boundary",
    [
        "x",
        "----WebKitFormBoundary7MA4YWxkTrZu0gW",
        "--------------------------d74496d66958873e",  # curl
        "a" * 70,  # the RFC 2046 maximum
        "0123456789abcdef0123456789abcdef",  # httpx: token_hex(16)
    ],
)
def test_any_boundary(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    valid_png: bytes,
    boundary: str,
) -> None:
    """Whatever boundary the client picks, the body is read."""
    body = multipart_body(sdk_parts, boundary=boundary)
    upload = read_body(body, content_type=f"multipart/form-data; boundary={boundary}")
    assert upload.image == valid_png


def test_quoted_boundary_and_mixed_case_media_type(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], sdk_parts: list[Part]
) -> None:
    """A quoted boundary and `Multipart/Form-Data` are read like the plain forms."""
    body = multipart_body(sdk_parts, boundary="q-b")
    upload = read_body(body, content_type='Multipart/Form-Data; charset=utf-8; boundary="q-b"')
    assert upload.fields["model"] == "dall-e-2"


def test_image_part_without_filename_but_octet_stream_is_a_file(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    part: type[Part],
    valid_png: bytes,
) -> None:
    """An image part with no filename and Content-Type application/octet-stream is a file."""
    body = multipart_body([part("image", valid_png, content_type="application/octet-stream")])
    upload = read_body(body)
    assert upload.image == valid_png
    assert upload.image_is_file is True


def test_image_part_with_filename_and_no_content_type_is_a_file(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    part: type[Part],
    valid_png: bytes,
) -> None:
    """An image part with a filename and no part Content-Type is a file."""
    upload = read_body(multipart_body([part("image", valid_png, filename="cat.bin")]))
    assert upload.image_is_file is True


def test_image_sent_as_a_text_field_is_invalid_type(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], part: type[Part]
) -> None:
    """An `image` text field (no filename, no Content-Type) is refused as invalid_type on image."""
    upload = read_body(multipart_body([part("image", b"/home/me/cat.png")]))
    assert upload.image_is_file is False
    with pytest.raises(InvalidRequest) as caught:
        parse_params(upload, models=("dall-e-2",), max_side=4096)
    assert (caught.value.code, caught.value.param) == ("invalid_type", "image")


def test_png_bytes_in_a_plain_part_are_still_an_image(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    part: type[Part],
    valid_png: bytes,
) -> None:
    """A part with no filename or type whose bytes are a PNG is accepted: PNG is known by bytes."""
    upload = read_body(multipart_body([part("image", valid_png)]))
    request = parse_params(upload, models=("dall-e-2",), max_side=4096)
    assert request.image == valid_png


@CHUNK_SIZES
def test_unknown_field_is_unknown_parameter(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    part: type[Part],
    chunk_size: int | None,
) -> None:
    """A field the endpoint does not have is unknown_parameter, with the field name as param."""
    body = multipart_body([part("quality", b"hd"), *sdk_parts])
    error = _invalid(read_body, body, chunk_size=chunk_size)
    assert (error.code, error.param, error.status) == ("unknown_parameter", "quality", 400)


def test_unknown_file_field_is_unknown_parameter(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    part: type[Part],
) -> None:
    """A file under an unknown name (e.g. `mask`, an edits field) is unknown_parameter."""
    body = multipart_body([*sdk_parts, part("mask", b"\x89PNG", filename="mask.png")])
    error = _invalid(read_body, body)
    assert (error.code, error.param) == ("unknown_parameter", "mask")


def test_unknown_field_param_is_bounded(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], part: type[Part]
) -> None:
    """A very long unknown field name is cut to 64 characters in param and message."""
    error = _invalid(read_body, multipart_body([part("z" * 500, b"1")]))
    assert error.code == "unknown_parameter"
    assert error.param == "z" * 64
    assert "z" * 65 not in error.message


@pytest.mark.parametrize("name", ["n", "image", "model"])
def test_duplicate_field_is_duplicate_parameter(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    part: type[Part],
    name: str,
) -> None:
    """A field sent twice is duplicate_parameter, with the field name as param."""
    again = next(p for p in sdk_parts if p.name == name)
    error = _invalid(read_body, multipart_body([*sdk_parts, again]), chunk_size=7)
    assert (error.code, error.param) == ("duplicate_parameter", name)


def test_error_mid_body_still_drains_the_rest(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    part: type[Part],
    counting_stream: type[CountingStream],
) -> None:
    """After an early field error the rest of the body is read (so the client sees the 400)."""
    chunks = [
        multipart_body([part("bogus", b"1")], close=False),
        *[b"x" * 1000] * 20,
        multipart_body(sdk_parts),
    ]
    stream = counting_stream(chunks)
    assert _invalid(read_body, stream).code == "unknown_parameter"
    assert stream.pulled == len(chunks)


def test_text_field_over_the_limit_is_invalid_value(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], part: type[Part]
) -> None:
    """A text field longer than MAX_TEXT_BYTES is invalid_value on that field."""
    error = _invalid(read_body, multipart_body([part("size", b"1" * (MAX_TEXT_BYTES + 1))]))
    assert (error.code, error.param) == ("invalid_value", "size")


def test_text_field_at_the_limit_is_read(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], part: type[Part]
) -> None:
    """A text field of exactly MAX_TEXT_BYTES is read whole."""
    upload = read_body(multipart_body([part("user", b"u" * MAX_TEXT_BYTES)]))
    assert upload.fields["user"] == "u" * MAX_TEXT_BYTES


@pytest.mark.parametrize(
    "template",
    [
        "this is not a multipart body at all",
        "",
        '--other\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n--other--\r\n',
        "--{b}\r\nContent-Disposition form-data\r\n\r\nx\r\n--{b}--\r\n",
        '--{b}\r\nContent-Disposition: form-data; name="n"\r\n',
        '--{b}\r\nContent-Disposition: attachment; name="n"\r\n\r\n1\r\n--{b}--\r\n',
    ],
    ids=["garbage", "empty", "wrong-boundary", "bad-header-line", "headers-never-end", "attach"],
)
@CHUNK_SIZES
def test_malformed_body_is_invalid_multipart(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    template: str,
    chunk_size: int | None,
) -> None:
    """A body that is not well-formed multipart is invalid_multipart with no param."""
    boundary = multipart_body([]).decode()[2:-4]  # the builder's default boundary
    body = template.replace("{b}", boundary).encode()
    error = _invalid(read_body, body, chunk_size=chunk_size)
    assert (error.code, error.param, error.status) == ("invalid_multipart", None, 400)


@CHUNK_SIZES
def test_missing_closing_boundary_is_invalid_multipart(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    chunk_size: int | None,
) -> None:
    """A body that stops before the closing boundary is invalid_multipart."""
    error = _invalid(read_body, multipart_body(sdk_parts, close=False), chunk_size=chunk_size)
    assert error.code == "invalid_multipart"
    assert "closing boundary" in error.message


def test_part_without_name_is_invalid_multipart(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], part: type[Part]
) -> None:
    """A part whose Content-Disposition has no name is invalid_multipart."""
    assert _invalid(read_body, multipart_body([part(None, b"1")])).code == "invalid_multipart"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",  # no boundary
        "multipart/form-data; boundary=",
        "multipart/mixed; boundary=----gw-test-boundary-7MA4YWxk",
    ],
)
def test_wrong_content_type_is_invalid_multipart(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    sdk_parts: list[Part],
    content_type: str | None,
) -> None:
    """A Content-Type that is not multipart/form-data with a boundary is invalid_multipart."""
    error = _invalid(read_body, multipart_body(sdk_parts), content_type=content_type)
    assert (error.code, error.param) == ("invalid_multipart", None)


def test_boundary_of_returns_the_boundary() -> None:
    """boundary_of extracts the boundary bytes from a multipart Content-Type."""
    assert boundary_of("multipart/form-data; boundary=abc123") == b"abc123"


def test_body_over_the_cap_stops_reading(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    part: type[Part],
    counting_stream: type[CountingStream],
) -> None:
    """A streamed body past MAX_BODY_BYTES is RequestTooLarge as soon as it passes the cap."""
    head = multipart_body([part("image", b"", filename="a.png")], close=False)[:-2]
    chunk = 64 * 1024
    chunks = [head] + [b"\0" * chunk] * 200  # about 12.5 MiB on offer
    stream = counting_stream(chunks)
    with pytest.raises(RequestTooLarge) as caught:
        read_body(stream)
    # The first chunk that takes the total past the cap is the last one pulled.
    expected = 1 + (MAX_BODY_BYTES - len(head)) // chunk + 1
    assert stream.pulled == expected
    assert stream.pulled < len(chunks)
    assert caught.value.status == 413
    assert caught.value.code == "request_too_large"
    assert caught.value.headers["connection"] == "close"


def test_body_of_exactly_the_cap_is_not_too_large(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], part: type[Part]
) -> None:
    """A body of exactly MAX_BODY_BYTES is read (and its oversized image is judged later)."""
    empty = multipart_body([part("image", b"", filename="a.png")])
    image = b"\0" * (MAX_BODY_BYTES - len(empty))
    body = multipart_body([part("image", image, filename="a.png")])
    assert len(body) == MAX_BODY_BYTES
    upload = read_body(body, chunk_size=256 * 1024)
    assert upload.image_size == len(image)


def test_declared_length_over_the_cap_is_refused_before_reading() -> None:
    """A Content-Length over MAX_BODY_BYTES is RequestTooLarge without reading the body."""
    with pytest.raises(RequestTooLarge):
        check_declared_length(str(MAX_BODY_BYTES + 1))


@pytest.mark.parametrize(
    "value", [None, "", "0", "1234", str(MAX_BODY_BYTES), "abc", "-5", " 12", "0" * 40 + "7"]
)
def test_declared_length_within_cap_or_unparseable_passes(value: str | None) -> None:
    """A Content-Length at or under the cap, absent or not a number is left to the stream check."""
    check_declared_length(value)  # passes: raises nothing


def test_declared_length_of_thousands_of_digits_is_too_large() -> None:
    """A 5000-digit Content-Length is RequestTooLarge, not a ValueError from int()."""
    with pytest.raises(RequestTooLarge):
        check_declared_length("9" * 5000)


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662\u0663", "\u0661" * 9])
def test_declared_length_with_non_ascii_digits_is_ignored(value: str | None) -> None:
    """A Content-Length of non-ASCII "digits" (superscript, Arabic-Indic) is not a number."""
    check_declared_length(value)  # passes: raises nothing


def test_slow_body_is_request_timeout(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], sdk_parts: list[Part]
) -> None:
    """A body that stalls past the deadline is RequestTimeout (400, no retry)."""

    async def stalled() -> AsyncIterator[bytes]:
        yield multipart_body(sdk_parts)[:100]
        await asyncio.sleep(3600)  # cancelled by the deadline long before
        yield b""

    with pytest.raises(RequestTimeout) as caught:
        read_body(stalled(), timeout_seconds=0.01)
    error = caught.value
    assert (error.status, error.code, error.param) == (400, "request_timeout", None)
    assert error.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("size", "code"),
    [(MAX_IMAGE_BYTES - 1, None), (MAX_IMAGE_BYTES, "image_too_large")],
    ids=["just-under-4MiB", "exactly-4MiB"],
)
def test_image_of_4_mib_is_too_large_and_just_under_is_not(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    part: type[Part],
    png_of_size: Callable[[int], bytes],
    size: int,
    code: str | None,
) -> None:
    """Through the reader: a 4 MiB PNG is image_too_large, one byte less is accepted."""
    image = png_of_size(size)
    body = multipart_body([part("image", image, filename="i.png", content_type="image/png")])
    upload = read_body(body, chunk_size=64 * 1024)
    assert upload.image_size == size
    if code is None:
        request = parse_params(upload, models=("dall-e-2",), max_side=4096)
        assert request.image == image
        assert request.image_digest == "blake3:" + blake3.blake3(image).hexdigest()
    else:
        with pytest.raises(InvalidRequest) as caught:
            parse_params(upload, models=("dall-e-2",), max_side=4096)
        assert (caught.value.code, caught.value.param) == (code, "image")


def test_image_between_4_mib_and_the_body_cap_is_image_too_large(
    read_body: Callable[..., Upload],
    multipart_body: Callable[..., bytes],
    part: type[Part],
    png_of_size: Callable[[int], bytes],
) -> None:
    """A PNG a little over 4 MiB fits the body cap and is refused as image_too_large."""
    image = png_of_size(MAX_IMAGE_BYTES + 1000)
    upload = read_body(multipart_body([part("image", image, filename="i.png")]), chunk_size=65536)
    assert upload.image_size == MAX_IMAGE_BYTES + 1000
    with pytest.raises(InvalidRequest) as caught:
        parse_params(upload, models=("dall-e-2",), max_side=4096)
    assert caught.value.code == "image_too_large"


class _CountingHasher:
    """A hasher that remembers the size of every piece it is fed."""

    name = "counting"

    def __init__(self) -> None:
        self.pieces: list[int] = []

    def update(self, data: bytes | memoryview, /) -> None:
        self.pieces.append(len(data))

    def hexdigest(self) -> str:
        return f"{sum(self.pieces):x}"


def test_without_a_hasher_the_image_is_read_and_not_hashed(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], part: type[Part]
) -> None:
    """With no hasher (the cache off) the image is read whole and its digest stays empty."""
    image = bytes(range(256)) * 40
    body = multipart_body([part("n", b"1"), part("image", image, filename="x.png")])
    upload = read_body(body, chunk_size=100, new_hasher=None)
    assert upload.image == image
    assert upload.image_digest == ""


def test_the_image_is_hashed_piece_by_piece_as_it_arrives(
    read_body: Callable[..., Upload], multipart_body: Callable[..., bytes], part: type[Part]
) -> None:
    """The hasher is fed the image's bytes as each chunk arrives, never the framing."""
    image = bytes(range(256)) * 40
    body = multipart_body([part("n", b"1"), part("image", image, filename="x.png")])
    hasher = _CountingHasher()
    upload = read_body(body, chunk_size=1000, new_hasher=lambda: hasher)
    assert sum(hasher.pieces) == len(image)
    assert len(hasher.pieces) >= len(body) // 1000 - 1  # one piece per chunk, not one at the end
    assert upload.image_digest == f"counting:{len(image):x}"


def _read_edit(body: bytes, chunk_size: int | None) -> Upload:
    """`read_upload` over an edits-shaped form: `image[]` repeated, `mask`, a long prompt."""
    from support.forms import CONTENT_TYPE, CountingStream, split

    from gateway.cache import input_hasher
    from gateway.multipart import FileFields, read_upload

    rules = FileFields(
        frozenset({"image", "image[]", "mask"}),
        repeated=frozenset({"image[]"}),
        new_hasher=input_hasher,
        long_text={"prompt": 4000},
    )
    return asyncio.run(
        read_upload(
            CONTENT_TYPE,
            CountingStream(split(body, chunk_size)),
            allowed=frozenset({"image", "image[]", "mask", "prompt"}),
            file_field=None,
            timeout_seconds=30,
            files=rules,
        )
    )


@CHUNK_SIZES
def test_several_file_parts_are_kept_in_order_each_with_its_own_digest(
    part: type[Part], multipart_body: Callable[..., bytes], chunk_size: int | None
) -> None:
    """`image[]` may repeat; each part (and the mask) keeps its bytes, order and a BLAKE3
    digest of its own, however the body is chunked; a prompt may pass MAX_TEXT_BYTES up to
    its own bound."""
    images = [b"first image bytes", b"second", b"third one"]
    prompt = b"p" * (MAX_TEXT_BYTES + 10)
    parts = [part("image[]", data, filename="x.png") for data in images]
    parts += [part("prompt", prompt), part("mask", b"the mask", filename="m.png")]
    upload = _read_edit(multipart_body(parts), chunk_size)
    assert [(f.name, f.data) for f in upload.files] == [
        *(("image[]", data) for data in images), ("mask", b"the mask")
    ]  # fmt: skip
    for file, data in zip(upload.files, [*images, b"the mask"], strict=True):
        assert file.digest == "blake3:" + blake3.blake3(data).hexdigest() and file.is_file
    assert upload.fields["prompt"] == prompt.decode()


def test_a_single_file_field_still_may_not_repeat(
    part: type[Part], multipart_body: Callable[..., bytes]
) -> None:
    """Only the repeatable fields repeat: a second `mask` is `duplicate_parameter`."""
    body = multipart_body([part("mask", b"a", filename="a"), part("mask", b"b", filename="b")])
    with pytest.raises(InvalidRequest) as caught:
        _read_edit(body, None)
    assert (caught.value.code, caught.value.param) == ("duplicate_parameter", "mask")


def test_a_body_past_its_own_bound_is_cut_off(
    part: type[Part], multipart_body: Callable[..., bytes]
) -> None:
    """`max_body_bytes` is the endpoint's cap: past it, 413, wherever the body is."""
    from support.forms import CONTENT_TYPE, CountingStream, split

    from gateway.multipart import read_upload

    body = multipart_body([part("image", b"x" * 5000, filename="a")])
    with pytest.raises(RequestTooLarge):
        asyncio.run(
            read_upload(
                CONTENT_TYPE,
                CountingStream(split(body, 512)),
                allowed=frozenset({"image"}),
                file_field="image",
                timeout_seconds=30,
                max_body_bytes=4096,
            )
        )
