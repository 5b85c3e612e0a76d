"""Coalescing across gateway processes sharing a Redis, and a failing leader."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support.config import auth, base_config
from support.fake_upstream import FakeUpstream, Reply, images_response
from support.pngs import make_png
from support.servers import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
PNG = make_png(24)


def cache_config(upstream: FakeUpstream, **cache: Any) -> dict[str, Any]:
    return {**base_config(upstream.url), "cache": {"enabled": True, **cache}}


async def _identical(urls: list[str], count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        calls = [
            client.post(
                urls[i % len(urls)] + "/v1/images/variations",
                headers=auth(),
                files={"image": ("a.png", PNG, "image/png")},
                data={"n": "2"},
            )
            for i in range(count)
        ]
        return list(await asyncio.gather(*calls))


def test_twenty_identical_misses_over_two_processes_make_one_upstream_call(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """A slow upstream and 20 concurrent identical requests: exactly 1 upstream call."""
    upstream.script = lambda r: Reply(body=images_response(r), delay=1.0)
    gateways = [start_gateway(cache_config(upstream), {"REDIS_URL": clean_redis}) for _ in range(2)]
    responses = asyncio.run(_identical([g.url for g in gateways], 20))
    assert [r.status_code for r in responses] == [200] * 20
    results = sorted(r.headers["x-gateway-cache"] for r in responses)
    assert results.count("MISS") == 1 and results.count("COALESCED") == 19
    assert len({r.content for r in responses}) == 1
    assert len(upstream.received) == 1


def test_waiters_of_a_failing_leader_do_not_hang(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """When the leading call fails, the others lead in turn or fail; none waits past the bound."""
    calls: list[int] = []

    def first_fails(received: Any) -> Reply:
        calls.append(1)
        if len(calls) == 1:
            return Reply(500, {"error": {"message": "x", "type": "server_error"}}, delay=0.5)
        return Reply(body=images_response(received), delay=0.2)

    upstream.script = first_fails
    config = cache_config(upstream, coalesce_wait_seconds=3)
    gateways = [start_gateway(config, {"REDIS_URL": clean_redis}) for _ in range(2)]
    started = time.monotonic()
    responses = asyncio.run(_identical([g.url for g in gateways], 10))
    assert time.monotonic() - started < 8
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(502) == 1 and statuses.count(200) == 9
    assert len(upstream.received) <= 3
