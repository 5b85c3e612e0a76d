"""Every validation row of the generations and edits endpoints: the OpenAI-shaped 400 naming
the parameter, and nothing reserved, cached or sent upstream."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from support.config import EDITS_MODEL, auth, edits_upstream
from support.fake_upstream import FakeUpstream, Reply, image_api_response
from support.fixtures import AppFactory
from support.pngs import make_jpeg, make_png
from support.requests import assert_openai_error

PNG = make_png(16)
RULES = {
    "default": [
        {"unit": "requests", "limit": 100, "window": "day"},
        {"unit": "images", "limit": 100, "window": "day"},
    ]
}


@pytest.fixture
def client(make_client: AppFactory, upstream: FakeUpstream) -> TestClient:
    """A gateway with one image model (at gpt-image-2's capabilities), quotas and a cache."""
    upstream.script = lambda r: Reply(body=image_api_response(r))
    return make_client(
        {"upstream": edits_upstream(upstream.url), "quotas": RULES, "cache": {"enabled": True}}
    )


def nothing_spent(client: TestClient, upstream: FakeUpstream) -> None:
    body = client.get("/v1/quota", headers=auth()).json()
    assert {r["unit"]: r["used"] for r in body["rules"]} == {"requests": 0, "images": 0}
    assert upstream.received == []


GENERATION_ROWS: list[tuple[dict[str, Any], str, str]] = [
    ({"prompt": None}, "missing_required_parameter", "prompt"),
    ({"prompt": ""}, "missing_required_parameter", "prompt"),
    ({"prompt": 7}, "invalid_type", "prompt"),
    ({"prompt": "x" * 32001}, "string_above_max_length", "prompt"),
    ({"model": "dall-e-2"}, "invalid_value", "model"),
    ({"model": 3}, "invalid_type", "model"),
    ({"n": 0}, "integer_below_min_value", "n"),
    ({"n": 11}, "integer_above_max_value", "n"),
    ({"n": "2"}, "invalid_type", "n"),
    ({"n": True}, "invalid_type", "n"),
    ({"n": 1.5}, "invalid_type", "n"),
    ({"size": "big"}, "invalid_value", "size"),
    ({"size": "1000x1000"}, "invalid_value", "size"),  # not multiples of 16
    ({"size": "4096x2048"}, "invalid_value", "size"),  # long edge over 3840
    ({"size": "3840x1024"}, "invalid_value", "size"),  # ratio over 3:1
    ({"size": "512x512"}, "invalid_value", "size"),  # under the fewest pixels
    ({"size": "3840x2400"}, "invalid_value", "size"),  # over the most pixels
    ({"quality": "ultra"}, "invalid_value", "quality"),
    ({"quality": "hd"}, "invalid_value", "quality"),
    ({"output_format": "gif"}, "invalid_value", "output_format"),
    ({"output_format": "jpeg", "output_compression": 101}, "integer_above_max_value",
     "output_compression"),
    ({"output_format": "webp", "output_compression": -1}, "integer_below_min_value",
     "output_compression"),
    ({"output_compression": 50}, "invalid_value", "output_compression"),  # png
    ({"background": "transparent"}, "invalid_value", "background"),  # gpt-image-2 has none
    ({"background": "none"}, "invalid_value", "background"),
    ({"moderation": "strict"}, "invalid_value", "moderation"),
    ({"response_format": "url"}, "invalid_value", "response_format"),
    ({"stream": "yes"}, "invalid_type", "stream"),
    ({"partial_images": 4}, "integer_above_max_value", "partial_images"),
    ({"style": "vivid"}, "unknown_parameter", "style"),
    ({"user": 5}, "invalid_type", "user"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "code", "param"), GENERATION_ROWS)
def test_a_bad_generation_is_refused_before_spending(
    client: TestClient, upstream: FakeUpstream, change: dict[str, Any], code: str, param: str
) -> None:
    """Each row: the 400 with the code and param the upstream would give; nothing spent."""
    body = {"prompt": "a fox", **change}
    body = {key: value for key, value in body.items() if value is not None}
    response = client.post("/v1/images/generations", json=body, headers=auth())
    assert_openai_error(response, 400, code, param)
    nothing_spent(client, upstream)


def test_a_body_that_is_not_json_is_refused(client: TestClient, upstream: FakeUpstream) -> None:
    """A body that does not parse, or is not an object: 400 invalid_json, param null."""
    for body in (b"{not json", b"[1, 2]"):
        response = client.post("/v1/images/generations", content=body, headers=auth())
        assert_openai_error(response, 400, "invalid_json", None)
    nothing_spent(client, upstream)


def test_the_accepted_limits_pass(client: TestClient, upstream: FakeUpstream) -> None:
    """The edges of each rule are accepted: 3840x1280 (3:1), 2880x2880 (8,294,400 pixels),
    1024x640 (655,360), n 10, jpeg at compression 0, an opaque background, `stream: false`,
    `b64_json`, a caller's own user fields (dropped)."""
    for body in (
        {"size": "3840x1280"}, {"size": "2880x2880"}, {"size": "1024x640"}, {"n": 10},
        {"output_format": "jpeg", "output_compression": 0, "background": "opaque"},
        {"stream": False, "partial_images": 0, "moderation": "low"},
        {"response_format": "b64_json", "user": "someone", "safety_identifier": "someone"},
    ):  # fmt: skip
        response = client.post(
            "/v1/images/generations", json={"prompt": "a fox", **body}, headers=auth()
        )
        assert response.status_code == 200, (body, response.text)
    assert len(upstream.received) == 7


GIF = b"GIF89a" + bytes(64)
CORRUPT_PNG = PNG[:40] + b"\x00" * 8 + PNG[48:]


def _jpeg_claiming(side: int) -> bytes:
    """A few hundred bytes of JPEG whose frame header (SOF0) claims `side` x `side`."""
    data = bytearray(make_jpeg(16))
    frame = data.index(b"\xff\xc0") + 5  # marker, length (2), precision (1)
    data[frame : frame + 4] = side.to_bytes(2, "big") * 2
    return bytes(data)


EDIT_ROWS: list[tuple[list[tuple[str, Any]], dict[str, str], str, str]] = [
    ([], {}, "missing_required_parameter", "image"),
    ([("image[]", PNG)] * 17, {}, "invalid_value", "image[]"),
    ([("image[]", GIF)], {}, "invalid_image_format", "image[]"),
    ([("image", CORRUPT_PNG)], {}, "invalid_image_format", "image"),
    ([("image", b"")], {}, "invalid_image_format", "image"),
    ([("image", _jpeg_claiming(20000))], {}, "invalid_image_dimensions", "image"),
    ([("image", PNG), ("mask", make_jpeg(16))], {}, "invalid_image_format", "mask"),
    ([("image", PNG), ("mask", make_png(32, alpha=True))], {}, "invalid_image_dimensions", "mask"),
    ([("image", PNG), ("mask", make_png(16))], {}, "invalid_image_format", "mask"),  # opaque
    ([("image", PNG)], {"prompt": ""}, "missing_required_parameter", "prompt"),
    ([("image", PNG)], {"moderation": "low"}, "unknown_parameter", "moderation"),
    ([("image", PNG)], {"input_fidelity": "high"}, "invalid_value", "input_fidelity"),
    ([("image", PNG)], {"n": "eleven"}, "invalid_type", "n"),
    ([("image", PNG)], {"size": "1000x1000"}, "invalid_value", "size"),
    ([("image", PNG)], {"mask_url": "x"}, "unknown_parameter", "mask_url"),
    ([("image", PNG)], {"stream": "maybe"}, "invalid_type", "stream"),
    ([("image", PNG)], {"stream": "true", "partial_images": "4"}, "integer_above_max_value",
     "partial_images"),
]  # fmt: skip


def post_form(client: TestClient, parts: list[tuple[str, bytes]], fields: dict[str, str]) -> Any:
    """A multipart edits request (always multipart, even with no file), as the SDKs send."""
    files: list[tuple[str, Any]] = [(name, (None, value)) for name, value in fields.items()]
    files += [(name, ("f.bin", data, "application/octet-stream")) for name, data in parts]
    return client.post("/v1/images/edits", files=files, headers=auth())


@pytest.mark.parametrize(("parts", "fields", "code", "param"), EDIT_ROWS)
def test_a_bad_edit_is_refused_before_spending(
    client: TestClient,
    upstream: FakeUpstream,
    parts: list[tuple[str, bytes]],
    fields: dict[str, str],
    code: str,
    param: str,
) -> None:
    """Each row: the 400 naming the part or field; nothing reserved, cached or sent."""
    response = post_form(client, parts, {"prompt": "add a hat", **fields})
    assert_openai_error(response, 400, code, param)
    nothing_spent(client, upstream)


def test_an_image_sent_as_a_text_field_is_refused(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """`image` as a plain form field (not a file) is `invalid_type`."""
    response = post_form(client, [], {"prompt": "add a hat", "image": "not a file"})
    assert_openai_error(response, 400, "invalid_type", "image")
    nothing_spent(client, upstream)


def test_the_models_image_size_limit_and_the_body_bound(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """An input image at or over the model's `max_input_image_bytes` is `image_too_large`;
    a body over `images.max_edit_body_mb` is 413, read no further; nothing is sent."""
    large = make_png(512, noise=True)  # about 770 KB
    section = edits_upstream(
        upstream.url, capabilities={EDITS_MODEL: {"max_input_image_bytes": len(large)}}
    )
    client = make_client({"upstream": section, "images": {"max_edit_body_mb": 1}})
    files = [("image", ("a.png", large, "image/png"))]
    response = client.post("/v1/images/edits", data={"prompt": "x"}, files=files, headers=auth())
    assert_openai_error(response, 400, "image_too_large", "image")
    files = [("image[]", ("a.png", large, "image/png"))] * 2
    response = client.post("/v1/images/edits", data={"prompt": "x"}, files=files, headers=auth())
    assert_openai_error(response, 413, "request_too_large")
    assert upstream.received == []


def test_jpeg_and_webp_inputs_go_upstream_as_what_they_are(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """PNG, JPEG and WebP inputs are recognised by their bytes (whatever the part says) and
    sent on with their own type and extension."""
    parts = [("image[]", PNG), ("image[]", make_jpeg(16)), ("image[]", make_jpeg(16, kind="WEBP"))]
    response = post_form(client, parts, {"prompt": "add a hat"})
    assert response.status_code == 200, response.text
    [seen] = upstream.received
    assert [(name, filename, kind) for name, filename, kind, _ in seen.parts] == [
        ("image[]", "image.png", "image/png"),
        ("image[]", "image.jpg", "image/jpeg"),
        ("image[]", "image.webp", "image/webp"),
    ]


def test_an_edit_declared_over_the_configs_bound_is_refused_before_reading(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """A Content-Length over `images.max_edit_body_mb` (32 MiB here) is a 413 from the
    header alone, as variations' is: nothing read, reserved or sent."""
    headers = {**auth(), "Content-Type": "multipart/form-data; boundary=b"}
    headers["Content-Length"] = str(100 * 2**20)
    response = client.post("/v1/images/edits", content=b"x" * 10, headers=headers)
    error = assert_openai_error(response, 413, "request_too_large")
    assert str(32 * 2**20) in error["message"]
    assert response.headers["connection"] == "close"
    nothing_spent(client, upstream)
