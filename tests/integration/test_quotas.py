"""Quotas through the app: refusals, headers, refunds and the quota endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from support.config import auth
from support.fake_upstream import FakeUpstream, Reply, images_response
from support.fixtures import AppFactory
from support.requests import assert_openai_error, post_variation

RULES = {
    "default": [
        {"unit": "requests", "limit": 3, "window": "minute"},
        {"unit": "images", "limit": 5, "window": "day"},
    ],
    "teams": {"vision": [{"unit": "usd", "limit": 1.0, "window": "month"}]},
}


@pytest.fixture
def limited(make_client: AppFactory) -> TestClient:
    return make_client({"quotas": RULES})


def used(client: TestClient, user: str = "alice") -> dict[str, float]:
    """The caller's usage per scope:unit:window, from GET /v1/quota."""
    body = client.get("/v1/quota", headers=auth(user)).json()
    return {f"{r['scope']}:{r['unit']}:{r['window']}": r["used"] for r in body["rules"]}


def test_success_carries_quota_headers(limited: TestClient) -> None:
    """x-ratelimit-* for the tightest rule per unit, and the IETF fields, on a 200."""
    response = post_variation(limited, fields={"n": "2", "size": "256x256"})
    assert response.status_code == 200
    h = response.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("3", "2")
    assert (h["x-ratelimit-limit-images"], h["x-ratelimit-remaining-images"]) == ("5", "3")
    assert (h["x-ratelimit-limit-usd"], h["x-ratelimit-remaining-usd"]) == ("1", "0.968")
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert '"user-requests-minute";q=3;w=60' in h["ratelimit-policy"]
    assert '"user-images-day";r=3;' in h["ratelimit"]


def test_rate_limit_refusal_is_429_and_consumes_nothing(
    limited: TestClient, upstream: FakeUpstream
) -> None:
    """The 4th request in a minute is a 429 rate_limit_exceeded and is not forwarded."""
    for _ in range(3):
        assert post_variation(limited, fields={"size": "256x256"}).status_code == 200
    response = post_variation(limited, fields={"size": "256x256"})
    assert_openai_error(response, 429, "rate_limit_exceeded", type_="requests")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert int(response.headers["retry-after-ms"]) >= 1
    assert "x-should-retry" not in response.headers
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(upstream.received) == 3
    assert used(limited)["user:requests:minute"] == 3


def test_quota_exhaustion_is_insufficient_quota(
    limited: TestClient, upstream: FakeUpstream
) -> None:
    """Asking for more images than are left is insufficient_quota, not to be retried."""
    response = post_variation(limited, fields={"n": "6"})
    assert_openai_error(response, 429, "insufficient_quota", type_="insufficient_quota")
    assert response.headers["x-should-retry"] == "false"
    reset = response.headers["x-ratelimit-reset-images"]
    assert response.json()["error"]["message"].endswith(f"It resets in {reset}.")
    assert upstream.received == []
    assert used(limited) == {"user:requests:minute": 0, "user:images:day": 0, "team:usd:month": 0}


def test_invalid_requests_consume_nothing(limited: TestClient) -> None:
    """A request refused by validation never touches the quota."""
    assert post_variation(limited, fields={"n": "11"}).status_code == 400
    assert set(used(limited).values()) == {0}


@pytest.mark.parametrize("status", [400, 429, 500])
def test_upstream_failure_keeps_the_request_and_refunds_images_and_usd(
    limited: TestClient, upstream: FakeUpstream, status: int
) -> None:
    """An upstream 400, 429 or 500 gives back the images and dollars (nothing was made) but
    keeps the request unit: the call reached the upstream."""
    upstream.reply(Reply(status, {"error": {"message": "x", "type": "server_error"}}))
    response = post_variation(limited, fields={"n": "2"})
    assert response.status_code in (400, 429, 502)
    assert response.headers["x-ratelimit-limit-images"] == "5"
    assert used(limited) == {"user:requests:minute": 1, "user:images:day": 0, "team:usd:month": 0}


def test_the_rate_limit_bounds_calls_to_a_failing_upstream(
    limited: TestClient, upstream: FakeUpstream
) -> None:
    """With 3 requests a minute and an upstream answering 429 to all, the 4th call is the
    gateway's own 429: a user cannot keep the company's rate-limited project saturated."""
    upstream.reply(Reply(429, {"error": {"message": "x", "code": "rate_limit_exceeded"}}))
    statuses = [post_variation(limited).status_code for _ in range(5)]
    assert statuses == [429] * 5
    assert len(upstream.received) == 3


def test_fewer_images_than_asked_refunds_the_rest(
    limited: TestClient, upstream: FakeUpstream
) -> None:
    """Upstream delivering 1 of 3 images is charged 1 image and its price."""

    def one_image(received: Any) -> Reply:
        body = images_response(received)
        body["data"] = body["data"][:1]
        return Reply(body=body)

    upstream.script = one_image
    assert post_variation(limited, fields={"n": "3", "size": "1024x1024"}).status_code == 200
    assert used(limited) == {
        "user:requests:minute": 1,
        "user:images:day": 1,
        "team:usd:month": 0.02,
    }


def test_team_pool_is_shared_across_members(limited: TestClient) -> None:
    """bob's spend shows in alice's view of the team pool."""
    assert (
        post_variation(limited, user="bob", fields={"n": "5", "size": "1024x1024"}).status_code
        == 200
    )
    assert used(limited, "alice")["team:usd:month"] == 0.1


def test_own_quota_shape(limited: TestClient) -> None:
    """GET /v1/quota lists the caller's rules with limit, used, remaining, resets_at and
    where each rule comes from."""
    body = limited.get("/v1/quota", headers=auth("carol")).json()
    assert (body["user"], body["team"]) == ("carol", "audio")
    rule = body["rules"][0]
    assert set(rule) == {
        "scope",
        "subject",
        "unit",
        "window",
        "limit",
        "used",
        "remaining",
        "resets_at",
        "source",
    }
    assert rule["resets_at"].endswith("Z") and rule["subject"] == "carol"
    assert rule["source"] == "config"
    assert (rule["limit"], rule["used"], rule["remaining"]) == (3, 0, 3)
    assert '"limit":3,' in limited.get("/v1/quota", headers=auth("carol")).text  # not 3.0


def test_admin_quotas_needs_the_admin_role(limited: TestClient) -> None:
    """/admin/quotas: 401 without a key, 403 for a user, everyone's rules for an admin."""
    assert_openai_error(limited.get("/admin/quotas"), 401, "invalid_api_key")
    assert_openai_error(
        limited.get("/admin/quotas", headers=auth("alice")), 403, "permission_denied"
    )
    body = limited.get("/admin/quotas", headers=auth("grafana")).json()
    assert [p["user"] for p in body["principals"]] == ["alice", "bob", "carol", "grafana"]
    assert body["teams"][0]["team"] == "vision" and body["teams"][0]["rules"][0]["unit"] == "usd"
