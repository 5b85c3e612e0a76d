"""The pure helpers of the upstream client: the rebuilt multipart framing and message
sanitising."""

from __future__ import annotations

from collections.abc import Callable

import blake3
from support.callers import multipart

from gateway.multipart import Upload
from gateway.redaction import MAX_MESSAGE_CHARS, sanitise

FIELDS = {
    "model": "dall-e-2",
    "n": "2",
    "size": "512x512",
    "response_format": "b64_json",
    "user": "0f" * 32,
}


def test_encoded_body_reads_back_identically(
    read_body: Callable[..., Upload], valid_png: bytes
) -> None:
    """The upstream body, read by the gateway's own reader, gives back every field and the image."""
    body, content_type = multipart(valid_png, **FIELDS)
    upload = read_body(body, content_type=content_type, chunk_size=7)
    assert upload.fields == FIELDS
    assert upload.image == valid_png
    assert upload.image_is_file is True
    assert upload.image_digest == "blake3:" + blake3.blake3(valid_png).hexdigest()


def test_image_part_is_named_image_png(valid_png: bytes) -> None:
    """The image goes upstream as `image.png`, Content-Type image/png, whatever the caller sent."""
    body, _ = multipart(valid_png)
    assert b'name="image"; filename="image.png"\r\nContent-Type: image/png\r\n\r\n' in body


def test_content_type_carries_the_body_boundary(valid_png: bytes) -> None:
    """The Content-Type's boundary is the one that frames the body, closed at the end."""
    body, content_type = multipart(valid_png, **FIELDS)
    prefix = "multipart/form-data; boundary="
    assert content_type.startswith(prefix)
    boundary = content_type[len(prefix) :].encode()
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    assert body.count(b"--" + boundary) == len(FIELDS) + 2


def test_each_body_gets_a_fresh_boundary(valid_png: bytes) -> None:
    """Two encodings use different random boundaries."""
    assert multipart(valid_png)[1] != multipart(valid_png)[1]


def test_only_the_given_fields_are_sent(valid_png: bytes) -> None:
    """The body holds exactly the given fields plus the image: nothing else."""
    body, _ = multipart(valid_png, n="1")
    assert body.count(b"Content-Disposition") == 2


def test_sanitise_keeps_an_ordinary_message() -> None:
    """A message with no credential in it is relayed unchanged."""
    message = "Invalid input image - format must be in ['RGBA', 'L', 'LA'], got RGB."
    assert sanitise(message) == message


def test_sanitise_removes_the_company_key() -> None:
    """The company's own upstream key is cut out wherever it appears."""
    secret = "company-secret-key-value"
    out = sanitise(f"key {secret} was refused; {secret}!", [secret])
    assert secret not in out
    assert out.count("[redacted]") == 2


def test_sanitise_removes_anything_that_looks_like_a_credential() -> None:
    """OpenAI-style keys, bearer tokens, org and project ids are redacted."""
    message = (
        "Incorrect API key provided: sk-proj-abc123XYZ****wxyz. "
        "Header Bearer abc.def.ghi; org-AbCdEf123456 proj-ZyXwVu987654 api_key=hunter2"
    )
    out = sanitise(message)
    for leaked in (
        "sk-proj-abc123",
        "abc.def.ghi",
        "org-AbCdEf123456",
        "proj-ZyXwVu987654",
        "hunter2",
    ):
        assert leaked not in out
    assert "Incorrect API key provided" in out


def test_sanitise_removes_urls_whole() -> None:
    """A URL in an upstream message is redacted whole: a signed URL's query is a credential."""
    url = (
        "https://oaidalleapiprodscus.blob.core.windows.net/private/org-x/img.png"
        "?se=2099-01-01T00%3A00%3A00Z&sp=r&sig=AbC%2Bdef%3D"
    )
    out = sanitise(f"Could not fetch {url} (expired).")
    assert out == "Could not fetch [redacted] (expired)."


def test_sanitise_bounds_the_length() -> None:
    """A very long upstream message is cut to MAX_MESSAGE_CHARS."""
    assert len(sanitise("x" * 10_000)) == MAX_MESSAGE_CHARS
