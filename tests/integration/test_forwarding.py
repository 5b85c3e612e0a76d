"""What reaches the upstream, and what the caller gets back, on the success path."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from support.config import UPSTREAM_KEY, USER_SECRET
from support.fake_upstream import FakeUpstream, Reply
from support.fixtures import AppFactory
from support.requests import DEFAULT_PNG, post_variation


def test_upstream_gets_a_multipart_rebuilt_from_the_allowlist(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """Only image, model, n, size, response_format and the pseudonymous user go upstream."""
    response = post_variation(
        client,
        fields={
            "n": "2",
            "size": "512x512",
            "response_format": "b64_json",
            "user": "caller-chosen",
        },
        headers={
            "Cookie": "session=abc",
            "X-Custom": "smuggled",
            "OpenAI-Organization": "org-caller",
        },
        filename="holiday photo.png",
    )
    assert response.status_code == 200, response.text
    [seen] = upstream.received
    assert seen.path == "/v1/images/variations"
    assert seen.fields == {
        "model": "dall-e-2",
        "n": "2",
        "size": "512x512",
        "response_format": "b64_json",
        "user": hmac.new(USER_SECRET.encode(), b"alice", hashlib.sha256).hexdigest(),
    }
    assert seen.files == {"image": ("image.png", "image/png", DEFAULT_PNG)}
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    for name in ("cookie", "x-custom", "openai-organization"):
        assert name not in seen.headers


def test_defaults_are_filled_in_before_forwarding(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """A request with only an image is forwarded with OpenAI's defaults."""
    assert post_variation(client).status_code == 200
    [seen] = upstream.received
    assert {k: seen.fields[k] for k in ("model", "n", "size", "response_format")} == {
        "model": "dall-e-2",
        "n": "1",
        "size": "1024x1024",
        "response_format": "url",
    }


def test_plain_user_field_sends_the_internal_id(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """With identity.user_field: plain, upstream sees the internal user id itself."""
    client = make_client({"identity": {"user_field": "plain"}})
    assert post_variation(client, user="bob", fields={"user": "mallory"}).status_code == 200
    assert upstream.received[0].fields["user"] == "bob"


def test_organization_and_project_come_from_config(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """OpenAI-Organization and OpenAI-Project are the company's, from the config."""
    client = make_client(
        {"upstream": {"base_url": upstream.url, "organization": "org-company", "project": "proj_x"}}
    )
    assert post_variation(client).status_code == 200
    seen = upstream.received[0].headers
    assert (seen["openai-organization"], seen["openai-project"]) == ("org-company", "proj_x")


def test_answer_is_relayed_unchanged_with_upstream_request_id(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """The ImagesResponse body passes through byte for byte; upstream's own headers do not."""
    body = b'{"created": 1234, "data": [{"url": "https://x.invalid/a.png"}],  "extra": true}'
    upstream.reply(
        Reply(
            body=body,
            headers={
                "set-cookie": "a=b",
                "openai-organization": "org-company",
                "x-ratelimit-remaining-requests": "9",
            },
        )
    )
    response = post_variation(client)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-upstream-request-id"] == "upstream-req-1"
    assert response.headers["x-request-id"].startswith("req_")
    for name in ("set-cookie", "openai-organization", "x-ratelimit-remaining-requests"):
        assert name not in response.headers


def test_upstream_cookies_are_never_sent_back(client: TestClient, upstream: FakeUpstream) -> None:
    """The upstream client is shared by every caller: a cookie the upstream sets in one
    answer must not ride along on the next request (someone else's, say)."""
    upstream.reply(Reply(body=b'{"created": 1, "data": []}', headers={"set-cookie": "a=b; Path=/"}))
    assert post_variation(client).status_code == 200
    assert post_variation(client, fields={"n": "2"}).status_code == 200
    assert [seen.headers.get("cookie") for seen in upstream.received] == [None, None]


@pytest.mark.parametrize("filename", [None, "x", "image.jpg"])
def test_png_is_recognised_by_its_bytes_whatever_the_filename(
    client: TestClient, filename: str | None
) -> None:
    """Any or no filename is fine: the bytes decide."""
    assert post_variation(client, filename=filename).status_code == 200


def test_fields_in_any_order_and_chunked_body(client: TestClient, upstream: FakeUpstream) -> None:
    """Go sorts fields, python puts the image last, node streams chunked: all are read alike."""
    boundary = "----GoBoundary1234"
    parts = [
        ("image", DEFAULT_PNG, 'form-data; name="image"; filename="a.png"'),
        ("n", b"3", 'form-data; name="n"'),
        ("size", b"256x256", 'form-data; name="size"'),
    ]
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
            for _, value, disp in parts
        )
        + f"--{boundary}--\r\n".encode()
    )

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    response = client.post(
        "/v1/images/variations",
        content=chunks(),
        headers={
            "Authorization": "Bearer gwk_alice_test_key_aaaaaaaaaaaaaaaa",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert response.status_code == 200, response.text
    assert upstream.received[0].fields["n"] == "3"
    assert len(response.json()["data"]) == 3
