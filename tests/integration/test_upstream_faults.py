"""Upstream failures, each mapped to the spec's answer without leaking upstream text."""

from __future__ import annotations

import httpx
import pytest
from starlette.testclient import TestClient
from support.config import UPSTREAM_KEY
from support.fake_upstream import FakeUpstream, Reply
from support.requests import assert_openai_error, post_variation


def test_upstream_500_with_json_is_502(client: TestClient, upstream: FakeUpstream) -> None:
    """An upstream 5xx is a 502 upstream_error with a short Retry-After."""
    upstream.reply(
        Reply(
            500, {"error": {"message": "boom", "type": "server_error", "code": None, "param": None}}
        )
    )
    response = post_variation(client)
    assert_openai_error(response, 502, "upstream_error", type_="server_error")
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-upstream-request-id"] == "upstream-req-1"


def test_upstream_502_with_html_is_502(client: TestClient, upstream: FakeUpstream) -> None:
    """An HTML error page from a proxy in front of the upstream is a clean 502."""
    upstream.reply(
        Reply(502, b"<html><body>Bad Gateway</body></html>", {"content-type": "text/html"})
    )
    error = assert_openai_error(post_variation(client), 502, "upstream_error", type_="server_error")
    assert "html" not in error["message"].lower()


def test_upstream_rejecting_company_key_is_502_without_its_message(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """Upstream 401: the caller sees a generic 502 upstream_auth_error, never upstream's words."""
    message = f"Incorrect API key provided: {UPSTREAM_KEY[:8]}****{UPSTREAM_KEY[-4:]}."
    upstream.reply(
        Reply(
            401,
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "param": None,
                }
            },
        )
    )
    response = post_variation(client)
    error = assert_openai_error(response, 502, "upstream_auth_error", type_="server_error")
    assert response.headers["x-should-retry"] == "false"
    assert UPSTREAM_KEY[-4:] not in response.text and "Incorrect" not in error["message"]


def test_upstream_hanging_past_the_timeout_is_504(make_client, upstream: FakeUpstream) -> None:
    """No answer within upstream.timeout_seconds: 504 upstream_timeout, not to be retried."""
    client = make_client({"upstream": {"base_url": upstream.url, "timeout_seconds": 0.3}})
    upstream.reply(Reply(delay=2.0, body={"created": 1, "data": []}))
    response = post_variation(client)
    assert_openai_error(response, 504, "upstream_timeout", type_="server_error")
    assert response.headers["x-should-retry"] == "false"


def test_unreachable_upstream_is_502(make_client) -> None:
    """Connection refused: 502 upstream_error."""
    client = make_client({"upstream": {"base_url": "http://127.0.0.1:9/v1"}})
    assert_openai_error(post_variation(client), 502, "upstream_error", type_="server_error")


def test_upstream_4xx_is_relayed_sanitised(client: TestClient, upstream: FakeUpstream) -> None:
    """A 4xx about the request keeps its status, type, code and param; credentials are cut out."""
    upstream.reply(
        Reply(
            400,
            {
                "error": {
                    "message": f"Your request was rejected (key {UPSTREAM_KEY}, org-abcdefghij).",
                    "type": "invalid_request_error",
                    "code": "content_policy_violation",
                    "param": "image",
                }
            },
        )
    )
    error = assert_openai_error(post_variation(client), 400, "content_policy_violation", "image")
    assert UPSTREAM_KEY not in error["message"] and "org-abcdefghij" not in error["message"]
    assert "[redacted]" in error["message"]


@pytest.mark.parametrize(
    ("code", "retry"), [("rate_limit_exceeded", None), ("insufficient_quota", "false")]
)
def test_upstream_429_keeps_its_code_and_retry_after(
    client: TestClient, upstream: FakeUpstream, code: str, retry: str | None
) -> None:
    """Upstream 429s pass through with their code; insufficient_quota is marked not to retry."""
    upstream.reply(
        Reply(
            429,
            {"error": {"message": "slow down", "type": "requests", "code": code, "param": None}},
            {"retry-after": "7", "x-ratelimit-remaining-requests": "0"},
        )
    )
    response = post_variation(client)
    assert_openai_error(response, 429, code, type_="requests")
    assert response.headers["retry-after"] == "7"
    assert response.headers.get("x-should-retry") == retry
    assert "x-ratelimit-remaining-requests" not in response.headers


@pytest.mark.parametrize(
    "body", [b"not json", b'{"created": 1}', b'{"data": "x"}', b'{"data": [{"url": "x"}']
)
def test_malformed_200_is_502(client: TestClient, upstream: FakeUpstream, body: bytes) -> None:
    """A 200 whose body is not an ImagesResponse is an upstream error, not relayed."""
    upstream.reply(Reply(200, body))
    assert_openai_error(post_variation(client), 502, "upstream_error", type_="server_error")


class _Exploding(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in the gateway")


def test_internal_error_is_openai_shaped_500(upstream: FakeUpstream) -> None:
    """An unexpected exception is a 500 in the OpenAI shape, with the request id, no traceback."""
    from support.config import ENV, base_config

    from gateway.app import create_app
    from gateway.settings import build_settings, parse_config

    settings = build_settings(parse_config(base_config(upstream.url)), ENV)
    with TestClient(create_app(settings, upstream_transport=_Exploding())) as client:
        response = post_variation(client)
    error = assert_openai_error(response, 500, "internal_error", type_="server_error")
    assert "bug" not in error["message"] and "Traceback" not in response.text
