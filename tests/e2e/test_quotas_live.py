"""Quotas on a real Redis shared by several live gateway processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from support.config import KEYS, auth, base_config
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.servers import GatewayProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
]
PNG = make_png(16)


def limited_config(upstream: FakeUpstream, quotas: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**base_config(upstream.url), "quotas": {"default": [], **quotas}, **extra}


async def _burst(urls: list[str], users: list[str], count: int) -> list[int]:
    """`count` concurrent variations requests spread over gateways and users: their statuses."""
    async with httpx.AsyncClient(timeout=30) as client:
        calls = [
            client.post(
                urls[i % len(urls)] + "/v1/images/variations",
                headers=auth(users[i % len(users)]),
                files={"image": ("a.png", PNG, "image/png")},
                data={"size": "256x256"},
            )
            for i in range(count)
        ]
        return [r.status_code for r in await asyncio.gather(*calls)]


@pytest.mark.parametrize(
    ("quotas", "users"),
    [
        ({"users": {"alice": [{"unit": "requests", "limit": 10, "window": "day"}]}}, ["alice"]),
        (
            {"teams": {"vision": [{"unit": "images", "limit": 10, "window": "month"}]}},
            ["alice", "bob"],
        ),
    ],
    ids=["user-limit", "team-pool"],
)
def test_two_processes_admit_exactly_the_limit(
    start_gateway: Callable[..., GatewayProcess],
    upstream: FakeUpstream,
    clean_redis: str,
    quotas: dict[str, Any],
    users: list[str],
) -> None:
    """60 concurrent requests over two gateway processes at a limit of 10 admit exactly 10."""
    env = {"REDIS_URL": clean_redis}
    gateways = [start_gateway(limited_config(upstream, quotas), env) for _ in range(2)]
    statuses = asyncio.run(_burst([g.url for g in gateways], users, 60))
    assert statuses.count(200) == 10 and statuses.count(429) == 50
    assert len(upstream.received) == 10


def test_sdk_gets_rate_limit_error_at_once_for_exhausted_quota(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """insufficient_quota reaches the SDK as RateLimitError with no retry sent to the gateway."""
    quotas = {"default": [{"unit": "images", "limit": 1, "window": "day"}]}
    gateway = start_gateway(limited_config(upstream, quotas), {"REDIS_URL": clean_redis})
    sent: list[str] = []
    http_client = openai.DefaultHttpxClient(
        event_hooks={"request": [lambda r: sent.append(str(r.url))]}
    )
    with openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=KEYS["alice"], http_client=http_client
    ) as client:
        client.images.create_variation(image=PNG)  # default max_retries (2) stays on
        with pytest.raises(openai.RateLimitError) as refused:
            client.images.create_variation(image=PNG)
    assert refused.value.code == "insufficient_quota"
    assert len(sent) == 2


def test_usage_survives_a_gateway_restart(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """Usage lives in Redis: a restarted gateway still refuses the spent quota."""
    config = limited_config(
        upstream, {"default": [{"unit": "images", "limit": 3, "window": "day"}]}
    )
    first = start_gateway(config, {"REDIS_URL": clean_redis})
    assert first.post_variation(PNG, n="3").status_code == 200
    first.stop()
    second = start_gateway(config, {"REDIS_URL": clean_redis})
    rules = httpx.get(second.url + "/v1/quota", headers=auth()).json()["rules"]
    assert [(r["unit"], r["used"], r["remaining"]) for r in rules] == [("images", 3, 0)]
    assert second.post_variation(PNG).status_code == 429
