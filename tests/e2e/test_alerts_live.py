"""Budget alerts from live gateway processes on one real Redis: replicas racing across a
threshold announce it once, and the team's day follows the company's time zone on Redis's
own clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from support.clock import wait_clear_of_day_edge
from support.config import auth, base_config
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.servers import GatewayProcess
from support.webhook_receiver import WebhookReceiver

from gateway.quota.calendar import Calendar

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
ZONE = "Pacific/Kiritimati"  # UTC+14: the local day is another than UTC's for 14 h of 24
CALLS = 16


def _config(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        **base_config(upstream.url),
        "quotas": {
            "timezone": ZONE,
            "teams": {"vision": [{"unit": "images", "limit": 10, "window": "day"}]},
        },
        "notifications": {"backoff_seconds": 0.1},
    }


def _send_at_once(urls: list[str]) -> list[int]:
    """CALLS one-image requests, alternating gateways and users, released together."""
    barrier = threading.Barrier(CALLS)
    png = make_png(16)

    def one(i: int) -> int:
        barrier.wait()
        response = httpx.post(
            urls[i % 2] + "/v1/images/variations",
            headers=auth(("alice", "bob")[i % 2]),
            files={"image": ("a.png", png, "image/png")},
            data={"size": "256x256", "n": "1"},
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(CALLS) as pool:
        return list(pool.map(one, range(CALLS)))


def test_two_processes_racing_across_a_threshold_announce_it_once(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """Sixteen requests released at once over two gateway processes against a pool of ten
    images: ten are admitted, and the team's webhook hears of 80 % once and of 100 % once,
    each signed, whichever replica's charge reached it."""
    wait_clear_of_day_edge(zone=ZONE)
    env = {"REDIS_URL": clean_redis}
    with WebhookReceiver() as hooks:
        first = start_gateway(_config(upstream), env)
        body = {"name": "vision leads", "url": hooks.url("/vision")}
        hook = httpx.post(first.url + "/admin/webhooks", json=body, headers=auth("grafana"))
        alerts = {"thresholds": [80, 100], "webhooks": [hook.json()["id"]]}
        put = httpx.put(
            first.url + "/admin/alerts/teams/vision", json=alerts, headers=auth("grafana")
        )
        assert put.status_code == 200, put.text
        second = start_gateway(_config(upstream), env)  # loads the alert rule as it starts
        statuses = _send_at_once([first.url, second.url])
        assert statuses.count(200) == 10 and statuses.count(429) == CALLS - 10
        posts = hooks.wait_for("/vision", 2)
        assert sorted(tuple(p.json()["thresholds"]) for p in posts) == [(80,), (100,)]
        assert all(p.signed_by(hook.json()["secret"]) for p in posts)
        assert len(hooks.wait_for("/vision", 3, seconds=1.0)) == 2  # and nothing more
        (hundred,) = [p.json() for p in posts if p.json()["thresholds"] == [100]]
        assert hundred["budget"]["timezone"] == ZONE and hundred["used"] == 10
        today = Calendar(ZONE).span("day", time.time())  # Redis's clock decided: its day
        assert hundred["budget"]["period"] == _iso_day(today.stamp)
        assert hundred["budget"]["resets_at"] == _iso(today.end)


def _iso_day(stamp: str) -> str:
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
