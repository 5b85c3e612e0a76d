"""Upstream refusals as callers, logs and metrics see them: rebuilt, never relayed, and
counted as whoever's fault they were."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from support.config import UPSTREAM_KEY
from support.fake_upstream import FakeUpstream, Reply
from support.requests import assert_openai_error, post_variation

PROJECT_ID = "proj_Q2xhT9aZk3LmN0pQ"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access log's JSON lines captured so far."""
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]


def outcomes(outcome: str) -> float:
    """gateway_requests_total for `outcome`, in this process."""
    return (
        REGISTRY.get_sample_value(
            "gateway_requests_total", {"endpoint": "variations", "outcome": outcome}
        )
        or 0.0
    )


def test_a_proj_id_and_the_configured_organization_never_reach_the_caller(
    make_client: Any, upstream: FakeUpstream
) -> None:
    """An upstream message naming the project (`proj_...`) and the configured organization
    reaches the caller with both redacted."""
    client = make_client({"upstream": {"organization": "acme-images", "project": PROJECT_ID}})
    message = f"Project `{PROJECT_ID}` of acme-images does not have access to model `dall-e-2`"
    upstream.reply(Reply(400, {"error": {"message": message, "code": "invalid_value"}}))
    error = assert_openai_error(post_variation(client), 400, "invalid_value")
    assert PROJECT_ID not in error["message"] and "acme-images" not in error["message"]
    assert "does not have access to model" in error["message"]


def test_a_key_echoed_in_code_reaches_neither_the_caller_nor_the_access_log(
    client: Any, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that echoes the company key in `code`, `type` and `param` gets a generic
    code in the answer and in the access log's `error` field."""
    echoed = {"message": "no", "code": UPSTREAM_KEY, "type": UPSTREAM_KEY, "param": UPSTREAM_KEY}
    upstream.reply(Reply(400, {"error": echoed}))
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        response = post_variation(client)
    assert_openai_error(response, 400, "invalid_request")
    assert UPSTREAM_KEY not in response.text
    line = access_lines(caplog)[-1]
    assert line["error"] == "invalid_request"
    assert UPSTREAM_KEY not in orjson.dumps(line).decode()


def test_the_callers_image_refused_upstream_is_invalid_not_an_upstream_error(
    client: Any, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 about the caller's image counts as `invalid`; the upstream-error alert's
    numerator does not move. A 5xx still counts as `upstream_error`."""
    refusal = {"message": "bad image", "code": "invalid_image", "param": "image"}
    upstream.reply(Reply(400, {"error": refusal}))
    before_invalid, before_upstream = outcomes("invalid"), outcomes("upstream_error")
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        assert post_variation(client).status_code == 400
        assert access_lines(caplog)[-1]["outcome"] == "invalid"
        upstream.reply(Reply(500, {"error": {"message": "down"}}))
        assert post_variation(client).status_code == 502
        assert access_lines(caplog)[-1]["outcome"] == "upstream_error"
    assert outcomes("invalid") == before_invalid + 1
    assert outcomes("upstream_error") == before_upstream + 1
