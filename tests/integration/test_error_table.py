"""One test per row of the spec's error table that needs neither quotas nor the cache.

Every refusal is OpenAI-shaped and reaches nothing upstream.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from support.config import KEYS
from support.fake_upstream import FakeUpstream
from support.fixtures import AppFactory
from support.pngs import make_png, png_chunk, raw_png
from support.requests import DEFAULT_PNG, PATH, assert_openai_error, post_variation

from gateway.multipart import MAX_BODY_BYTES
from gateway.png import MAX_CHUNKS, MAX_IMAGE_BYTES

# A multipart file part as the test client takes it: (field, (filename, content[, type])).
FilePart = tuple[str, tuple[str | None, bytes] | tuple[str | None, bytes, str]]


@pytest.fixture(autouse=True)
def nothing_reaches_upstream(upstream: FakeUpstream) -> Iterator[None]:
    """Each test here ends with the upstream having seen nothing."""
    yield
    assert upstream.received == []


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer gwk_unknown_key", "Bearer " + "x" * 600],
)
def test_missing_malformed_or_unknown_key_is_401(
    client: TestClient, authorization: str | None
) -> None:
    """No, malformed or unknown key: 401 invalid_api_key, and the key is never echoed."""
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.post(PATH, files={"image": ("a.png", DEFAULT_PNG)}, headers=headers)
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert "gwk_unknown_key" not in error["message"]


def test_revoked_key_is_401(make_client: AppFactory) -> None:
    """A key removed from the config no longer authenticates."""
    client = make_client({"principals": []})
    response = client.post(
        PATH,
        files={"image": ("a.png", DEFAULT_PNG)},
        headers={"Authorization": f"Bearer {KEYS['alice']}"},
    )
    assert_openai_error(response, 401, "invalid_api_key")


@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/form-data", "text/plain", None]
)
def test_non_multipart_body_is_invalid_multipart(
    client: TestClient, content_type: str | None
) -> None:
    """A body that is not multipart/form-data with a boundary is refused."""
    headers = {"Authorization": f"Bearer {KEYS['alice']}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(PATH, content=b'{"image": "x"}', headers=headers)
    assert_openai_error(response, 400, "invalid_multipart")


@pytest.mark.parametrize(
    "body",
    [b"garbage", b'--b\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n', b"--b--\r\n"[:3]],
)
def test_malformed_multipart_is_invalid_multipart(client: TestClient, body: bytes) -> None:
    """Garbage, or a body that stops before its closing boundary, is refused."""
    headers = {
        "Authorization": f"Bearer {KEYS['alice']}",
        "Content-Type": "multipart/form-data; boundary=b",
    }
    assert_openai_error(client.post(PATH, content=body, headers=headers), 400, "invalid_multipart")


def test_declared_oversize_body_is_413_with_connection_close(client: TestClient) -> None:
    """A Content-Length over the cap is refused before reading, and the connection closed."""
    headers = {
        "Authorization": f"Bearer {KEYS['alice']}",
        "Content-Type": "multipart/form-data; boundary=b",
        "Content-Length": str(50 * 1024 * 1024),
    }
    response = client.post(PATH, content=b"x" * 10, headers=headers)
    error = assert_openai_error(response, 413, "request_too_large")
    assert "less than 4 MB" in error["message"]
    assert response.headers["connection"] == "close"


def test_streamed_oversize_body_is_413(client: TestClient) -> None:
    """A chunked body that passes the cap is refused with 413 (cut-off is shown live, in e2e)."""

    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"\0" * 65536

    headers = {
        "Authorization": f"Bearer {KEYS['alice']}",
        "Content-Type": "multipart/form-data; boundary=b",
    }
    response = client.post(PATH, content=chunks(), headers=headers)
    error = assert_openai_error(response, 413, "request_too_large")
    assert "less than 4 MB" in error["message"]
    assert response.headers["connection"] == "close"


def test_missing_image_is_missing_required_parameter(client: TestClient) -> None:
    """A request without an image names the image param."""
    response = client.post(
        PATH, files={"n": (None, "1")}, headers={"Authorization": f"Bearer {KEYS['alice']}"}
    )
    assert_openai_error(response, 400, "missing_required_parameter", "image")


def test_image_sent_as_text_field_is_invalid_type(client: TestClient) -> None:
    """`-F image=hello` (a text field, not a file) is an invalid type for image."""
    response = client.post(
        PATH,
        data={"image": "hello"},
        files={"n": (None, "1")},
        headers={"Authorization": f"Bearer {KEYS['alice']}"},
    )
    assert_openai_error(response, 400, "invalid_type", "image")


@pytest.mark.parametrize("field", ["n", "size", "image"])
def test_field_sent_twice_is_duplicate_parameter(client: TestClient, field: str) -> None:
    """A field given twice is refused, naming it."""
    image: FilePart = ("image", ("a.png", DEFAULT_PNG, "image/png"))
    text: dict[str, tuple[None, bytes]] = {"n": (None, b"1"), "size": (None, b"256x256")}
    files: list[FilePart] = (
        [image, image] if field == "image" else [image, (field, text[field]), (field, text[field])]
    )
    response = client.post(PATH, files=files, headers={"Authorization": f"Bearer {KEYS['alice']}"})
    assert_openai_error(response, 400, "duplicate_parameter", field)


@pytest.mark.parametrize("field", ["prompt", "quality", "mask"])
def test_unknown_field_is_unknown_parameter(client: TestClient, field: str) -> None:
    """A field this endpoint does not have is refused, naming it."""
    response = post_variation(client, fields={field: "x"})
    assert_openai_error(response, 400, "unknown_parameter", field)


@pytest.mark.parametrize(
    "image",
    [
        b"",
        b"GIF89a" + b"\0" * 100,
        DEFAULT_PNG[:-20],
        DEFAULT_PNG[:40] + b"\xff" + DEFAULT_PNG[41:],
    ],
    ids=["empty", "gif", "truncated", "bad-crc"],
)
def test_not_a_png_is_invalid_image_format(client: TestClient, image: bytes) -> None:
    """Empty, non-PNG, truncated or corrupt images are refused."""
    assert_openai_error(post_variation(client, image=image), 400, "invalid_image_format", "image")


def test_image_of_4mib_or_more_is_image_too_large(client: TestClient) -> None:
    """An image part of exactly 4 MiB is too large, even inside the body cap."""
    image = DEFAULT_PNG + b"\0" * (MAX_IMAGE_BYTES - len(DEFAULT_PNG))
    assert_openai_error(post_variation(client, image=image), 400, "image_too_large", "image")


@pytest.mark.parametrize(
    "image",
    [make_png(40, height=30), raw_png(0, 0), raw_png(5000, 5000)],
    ids=["not-square", "zero", "huge"],
)
def test_bad_dimensions_are_invalid_image_dimensions(client: TestClient, image: bytes) -> None:
    """Non-square, zero-sized, or over-the-ceiling images are refused."""
    assert_openai_error(
        post_variation(client, image=image), 400, "invalid_image_dimensions", "image"
    )


@pytest.mark.parametrize(
    ("n", "code"),
    [
        ("two", "invalid_type"),
        ("1.5", "invalid_type"),
        ("", "invalid_type"),
        ("0", "integer_below_min_value"),
        ("11", "integer_above_max_value"),
    ],
)
def test_bad_n_is_refused_with_its_code(client: TestClient, n: str, code: str) -> None:
    """`n` must be an integer from 1 to 10."""
    assert_openai_error(post_variation(client, fields={"n": n}), 400, code, "n")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "2048x2048"),
        ("size", "256"),
        ("response_format", "png"),
        ("model", "dall-e-3"),
        ("model", "gpt-image-1"),
    ],
)
def test_disallowed_values_are_invalid_value(client: TestClient, field: str, value: str) -> None:
    """size, response_format and model outside the allowed sets are refused, naming the field."""
    assert_openai_error(post_variation(client, fields={field: value}), 400, "invalid_value", field)


def test_unknown_path_is_openai_shaped_404(client: TestClient) -> None:
    """Unknown paths answer 404 in the OpenAI shape, never a redirect."""
    response = client.post(
        "/v1/images/unknown",
        headers={"Authorization": f"Bearer {KEYS['alice']}"},
        follow_redirects=False,
    )
    assert_openai_error(response, 404, "not_found")
    assert_openai_error(client.post("/v1/images/variations/"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client: TestClient) -> None:
    """GET on the variations path is 405 with Allow: POST."""
    response = client.get(PATH)
    assert_openai_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_a_boundary_over_256_characters_is_invalid_multipart(client: TestClient) -> None:
    """A boundary the parser cannot take is the caller's 400, not a 500 with a traceback."""
    boundary = "b" * 300
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n--{boundary}--\r\n'
    ).encode()
    headers = {
        "Authorization": f"Bearer {KEYS['alice']}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    response = client.post(PATH, content=body, headers=headers)
    error = assert_openai_error(response, 400, "invalid_multipart")
    assert "Traceback" not in response.text and boundary not in error["message"]


def flooded_png(chunks: int) -> bytes:
    """A valid 32x32 PNG with `chunks` empty private chunks between IHDR and the data."""
    png = make_png(32)
    ihdr_end = 8 + 25
    return png[:ihdr_end] + png_chunk(b"prVt", b"") * chunks + png[ihdr_end:]


def test_a_png_of_hundreds_of_thousands_of_empty_chunks_is_refused(client: TestClient) -> None:
    """300,000 empty chunks (3.6 MB, every CRC right) are refused at the chunk cap instead of
    walked one by one; a PNG with a few thousand chunks is still read."""
    response = post_variation(client, image=flooded_png(300_000))
    error = assert_openai_error(response, 400, "invalid_image_format", "image")
    assert f"more than {MAX_CHUNKS} chunks" in error["message"]


def test_the_text_fields_are_checked_before_the_image(client: TestClient) -> None:
    """A bad `n` is refused as such even when the image is corrupt too: the cheap checks
    come before the image's walk."""
    corrupt = DEFAULT_PNG[:40] + b"\xff" + DEFAULT_PNG[41:]
    response = post_variation(client, image=corrupt, fields={"n": "11"})
    assert_openai_error(response, 400, "integer_above_max_value", "n")


def test_the_root_404_points_to_the_console_and_the_readme(client: TestClient) -> None:
    """A browser opening the gateway's root is told where the API, the admin console and
    the README are, in the OpenAI shape."""
    response = client.get("/")
    assert_openai_error(response, 404, "not_found")
    message = response.json()["error"]["message"]
    assert "/v1/images/variations" in message
    assert "/admin/console" in message and "README" in message
