"""Upstream faults, each mapped to the spec's answer, refunded to what was delivered, and
never leaking upstream text.

Every fault of `support.upstream_faults.FAULTS` is played against the app (in process, quota
counters in a real Redis): slow, hung, refused, reset, truncated, malformed, 5xx with JSON
and with HTML, 401/403, 4xx, 429 of both kinds, and 200s with fewer or no images. After
each, the counters Redis holds must equal the cost of what callers received.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from support.config import ENV, base_config
from support.fake_upstream import FakeUpstream, Reply
from support.ledger import LEDGER_QUOTAS, Seen, Tally, assert_balanced, seen_of
from support.requests import assert_openai_error, post_variation
from support.servers import free_port
from support.upstream_faults import (
    CANARIES,
    FAULTS,
    LEAKY_HEADERS,
    UPSTREAM_TIMEOUT,
    Fault,
    error_body,
)

pytestmark = pytest.mark.redis
# (n, size, response_format) of the requests each fault answers.
ASKS = (("1", "256x256", "url"), ("3", "512x512", "b64_json"), ("2", "1024x1024", "url"))


def assert_no_upstream_leak(response: httpx.Response) -> None:
    """Nothing of the upstream's error text or private headers reaches the caller."""
    text = response.text + repr(dict(response.headers))
    for canary in CANARIES:
        assert canary not in text, f"{canary!r} leaked to the caller"
    assert "set-cookie" not in response.headers
    assert "openai-organization" not in response.headers
    assert (
        response.headers.get("x-ratelimit-remaining-requests")
        != (LEAKY_HEADERS["x-ratelimit-remaining-requests"])
    )


def assert_answer(fault: Fault, response: httpx.Response, n: int) -> None:
    """The status, error shape, headers and images SPEC section 5 gives for `fault`."""
    if fault.status == 200:
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == fault.expects_images(n)
    else:
        assert_openai_error(response, fault.status, fault.code, type_=fault.type, param=(
            "image" if fault.code == "content_policy_violation" else None
        ))  # fmt: skip
    for name, value in fault.headers.items():
        assert response.headers.get(name) == value, name
    assert_no_upstream_leak(response)


def faulty_client(make_client: Any, upstream: FakeUpstream, redis_url: str, fault: Fault) -> Any:
    base_url = f"http://127.0.0.1:{free_port()}/v1" if fault.refused else upstream.url
    upstream.script = fault.reply
    return make_client(
        {
            "upstream": {"base_url": base_url, "timeout_seconds": UPSTREAM_TIMEOUT},
            "quotas": LEDGER_QUOTAS,
        },
        env={"REDIS_URL": redis_url},
    )


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_each_upstream_fault_answers_per_spec_and_balances_the_ledger(
    make_client: Any, upstream: FakeUpstream, clean_redis: str, fault: Fault
) -> None:
    """Each fault gives its spec answer, leaks nothing, and leaves charged = delivered."""
    client = faulty_client(make_client, upstream, clean_redis, fault)
    tally = Tally()

    def ask(n: str, size: str, response_format: str) -> tuple[httpx.Response, Seen]:
        fields = {"n": n, "size": size, "response_format": response_format}
        response = post_variation(client, fields=fields)
        return response, tally.add(seen_of(response, size=size))

    with ThreadPoolExecutor(len(ASKS)) as pool:  # the slow faults wait side by side
        answers = list(pool.map(lambda ask_: ask(*ask_), ASKS))
    for (response, _), (n, _, _) in zip(answers, ASKS, strict=True):
        assert_answer(fault, response, int(n))
    assert len(upstream.received) == (0 if fault.refused else len(ASKS))
    assert_balanced(clean_redis, tally.seen, upstream.received)


def test_upstream_5xx_keeps_its_request_id_and_a_short_retry_after(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """An upstream 5xx is a 502 with Retry-After: 1 and the upstream's request id."""
    upstream.reply(Reply(500, error_body(type="server_error")))
    response = post_variation(client)
    assert_openai_error(response, 502, "upstream_error", type_="server_error")
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-upstream-request-id"] == "upstream-req-1"


def test_upstream_4xx_message_is_relayed_with_credentials_cut_out(
    client: TestClient, upstream: FakeUpstream
) -> None:
    """A 4xx about the request keeps its words, with each credential-like token redacted."""
    upstream.reply(Reply(400, error_body(type="invalid_request_error", code="invalid_image")))
    error = assert_openai_error(post_variation(client), 400, "invalid_image")
    assert error["message"].startswith("Request failed for key [redacted]")
    assert error["message"].count("[redacted]") >= 4


class _Exploding(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in the gateway")


def test_internal_error_is_openai_shaped_500(upstream: FakeUpstream) -> None:
    """An unexpected exception is a 500 in the OpenAI shape, with the request id, no traceback."""
    from gateway.app import create_app
    from gateway.settings.build import build_settings
    from gateway.settings.config import parse_config

    settings = build_settings(parse_config(base_config(upstream.url)), ENV)
    with TestClient(create_app(settings, upstream_transport=_Exploding())) as client:
        response = post_variation(client)
    error = assert_openai_error(response, 500, "internal_error", type_="server_error")
    assert "bug" not in error["message"] and "Traceback" not in response.text
