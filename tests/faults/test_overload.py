"""Crowds of large uploads: memory bounded by the requests in flight, overload refused in
OpenAI's shape."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support.callers import post
from support.config import ENV, base_config
from support.fake_upstream import FakeUpstream, Reply
from support.ledger import Tally
from support.memory import MiB, PeakRss
from support.pngs import png_of_about
from support.servers import GatewayProcess

pytestmark = pytest.mark.e2e
UPLOAD = png_of_about(int(3.9 * MiB))
CROWD = 200
# An upload in flight is held about twice (as read, and as forwarded); three times is the
# bound, so that any extra buffering or a leak per request shows.
PER_REQUEST = 3 * 4 * MiB
ANSWER = {"created": 1700000000, "data": [{"url": "https://upstream.invalid/a.png"}]}


@pytest.fixture
def quick_upstream() -> Any:
    """An upstream that answers every upload after 0.5 s without decoding it."""
    with FakeUpstream(parse=False) as fake:
        fake.reply(Reply(body=ANSWER, delay=0.5))
        yield fake


async def _crowd(url: str, count: int) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(post(client, url, tally, UPLOAD) for _ in range(count)))
    return tally


def test_200_concurrent_4mb_uploads_hold_memory_per_request_in_flight(
    start_gateway: Callable[..., GatewayProcess],
    quick_upstream: FakeUpstream,
    measured: Callable[[str], None],
) -> None:
    """200 uploads of 3.9 MB at once are all served, and the gateway's RSS grows by less
    than three uploads' worth per request in flight."""
    gateway = start_gateway(base_config(quick_upstream.url), ENV)
    assert gateway.proc is not None
    with PeakRss(gateway.proc.pid) as rss:
        tally = asyncio.run(_crowd(gateway.url, CROWD))
    assert tally.statuses() == {200: CROWD}
    measured(
        f"{CROWD} concurrent {len(UPLOAD) / MiB:.1f} MiB uploads: peak RSS "
        f"{rss.peak / MiB:.0f} MiB (base {rss.base / MiB:.0f}, "
        f"{rss.growth / CROWD / MiB:.1f} MiB per request)"
    )
    assert rss.growth < CROWD * PER_REQUEST


def test_past_the_concurrency_limit_uploads_are_refused_openai_shaped(
    start_gateway: Callable[..., GatewayProcess],
    quick_upstream: FakeUpstream,
    measured: Callable[[str], None],
) -> None:
    """With limits.max_concurrent_requests at 20, the rest of 200 concurrent uploads are
    refused unread: a 503 server_overloaded in OpenAI's shape, or (for a caller still
    sending its 3.9 MB when the connection closes after it) a connection error, which the
    SDKs retry; memory is bounded by the 20."""
    limit = 20
    config = {**base_config(quick_upstream.url), "limits": {"max_concurrent_requests": limit}}
    gateway = start_gateway(config, ENV)
    assert gateway.proc is not None
    with PeakRss(gateway.proc.pid) as rss:
        tally = asyncio.run(_crowd(gateway.url, CROWD))
    statuses = tally.statuses()
    assert set(statuses) <= {0, 200, 503} and statuses[200] >= limit
    assert len(quick_upstream.received) == statuses[200]
    refused = [seen for seen in tally.seen if seen.status == 503]
    for seen in refused:
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["retry-after"] == "1"
        assert seen.code == "server_overloaded"
    measured(
        f"{CROWD} concurrent uploads, at most {limit} in flight: peak RSS "
        f"{rss.peak / MiB:.0f} MiB (base {rss.base / MiB:.0f}); {len(refused)} refused 503"
    )
    assert rss.growth < limit * PER_REQUEST + 128 * MiB
