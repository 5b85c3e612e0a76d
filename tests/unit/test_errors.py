"""Every gateway error renders in OpenAI's shape: JSON, the right status, all four keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.responses import Response

from gateway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    StoreUnavailable,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    error_response,
)

CASES = [
    (GatewayError(), 500, "server_error", "internal_error"),
    (AuthenticationError(), 401, "invalid_request_error", "invalid_api_key"),
    (PermissionDenied(), 403, "invalid_request_error", "permission_denied"),
    (InvalidRequest(), 400, "invalid_request_error", "invalid_request"),
    (RequestTimeout(), 400, "invalid_request_error", "request_timeout"),
    (RequestTooLarge(), 413, "invalid_request_error", "request_too_large"),
    (NotFound(), 404, "invalid_request_error", "not_found"),
    (MethodNotAllowed(), 405, "invalid_request_error", "method_not_allowed"),
    (RateLimited(), 429, "requests", "rate_limit_exceeded"),
    (QuotaExceeded(), 429, "insufficient_quota", "insufficient_quota"),
    (StoreUnavailable(), 503, "server_error", "quota_backend_unavailable"),
    (Overloaded(), 503, "server_error", "server_overloaded"),
    (UpstreamError(), 502, "server_error", "upstream_error"),
    (UpstreamAuthError(), 502, "server_error", "upstream_auth_error"),
    (UpstreamTimeout(), 504, "server_error", "upstream_timeout"),
]


def _rendered(
    error: GatewayError, extra: dict[str, str] | None = None
) -> tuple[Response, dict[str, Any]]:
    response = error_response(error, extra)
    return response, json.loads(bytes(response.body))


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"), CASES, ids=[type(c[0]).__name__ for c in CASES]
)
def test_every_error_has_status_type_code_and_all_four_keys(
    error: GatewayError, status: int, type_: str, code: str
) -> None:
    """Each error class renders its status and an `error` object with exactly the four keys."""
    response, body = _rendered(error)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_
    assert body["error"]["code"] == code
    assert body["error"]["param"] is None
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def test_param_and_code_are_rendered() -> None:
    """An InvalidRequest's code and param appear in the body."""
    _, body = _rendered(InvalidRequest("bad n", code="invalid_type", param="n"))
    assert body == {
        "error": {
            "message": "bad n",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_type",
        }
    }


def test_null_code_is_still_present() -> None:
    """An error whose code is None still carries the `code` key, as null."""
    error = UpstreamRejected(400, "nope", type_="invalid_request_error", code=None, param=None)
    _, body = _rendered(error)
    assert body["error"]["code"] is None
    assert "code" in body["error"]
    assert "param" in body["error"]


def test_upstream_rejection_keeps_its_status_and_codes() -> None:
    """An upstream 4xx is relayed with its status, type, code and param."""
    error = UpstreamRejected(
        400, "Invalid image", type_="invalid_request_error", code="invalid_image", param="image"
    )
    response, body = _rendered(error)
    assert response.status_code == 400
    assert body["error"] == {
        "message": "Invalid image",
        "type": "invalid_request_error",
        "param": "image",
        "code": "invalid_image",
    }
    assert "retry-after" not in response.headers


@pytest.mark.parametrize(
    ("error", "header", "value"),
    [
        (RequestTooLarge(), "connection", "close"),
        (RequestTimeout(), "x-should-retry", "false"),
        (QuotaExceeded(), "x-should-retry", "false"),
        (UpstreamAuthError(), "x-should-retry", "false"),
        (UpstreamTimeout(), "x-should-retry", "false"),
        (StoreUnavailable(), "retry-after", "2"),
        (UpstreamError(), "retry-after", "1"),
    ],
)
def test_class_headers_are_sent(error: GatewayError, header: str, value: str) -> None:
    """Each class's default headers (no-retry, Connection: close, Retry-After) are sent."""
    response, _ = _rendered(error)
    assert response.headers[header] == value


def test_rate_limited_may_be_retried() -> None:
    """A short-window 429 does not carry x-should-retry: false by default."""
    response, _ = _rendered(RateLimited())
    assert "x-should-retry" not in response.headers


def test_instance_and_extra_headers_are_merged() -> None:
    """Headers given to the error and extra headers at render time are all sent."""
    error = RateLimited(headers={"retry-after": "7"})
    response, _ = _rendered(error, {"x-request-id": "req_1"})
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-request-id"] == "req_1"


def test_instances_do_not_share_headers() -> None:
    """Adding a header to one error does not leak into another of the same class."""
    first = QuotaExceeded()
    first.headers["retry-after"] = "99"
    assert "retry-after" not in QuotaExceeded().headers


def test_message_defaults_and_overrides() -> None:
    """An error without a message uses its class default; a given message replaces it."""
    assert AuthenticationError().message == "Incorrect API key provided."
    assert str(NotFound("no such path")) == "no such path"
