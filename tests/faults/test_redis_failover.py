"""Gateways on a Redis Cluster and on a Sentinel-managed primary: exact limits across
processes, and a primary killed under load.

Real servers on loopback (support/redis_topologies.py). A failover is a short outage of
the team's slot: callers get the configured fail_closed answer for its seconds, never a
500, service comes back by itself, and the counters equal what callers received.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.callers import Crowd, during
from support.config import auth
from support.fake_upstream import FakeUpstream, Received, Reply, images_response
from support.ledger import Books, Seen, expected_books, ledger_config, quota_counters
from support.pngs import make_png
from support.redis_topologies import RedisClusterGroup, SentinelGroup
from support.servers import GatewayProcess

from gateway.quota.counters import QUOTA_TAG
from gateway.store.base import KEY_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
IMAGES = [make_png(16 + i) for i in range(4)]
RECOVERY_SECONDS = 10.0  # normal service this soon after the primary died
# No answer waits longer than this after the kill: a request makes at most two store calls
# before its answer (the room check, the charge), each bounded by store.wait_seconds
# (default 1 s), with half a second to spare for a loaded machine.
HELD_AT_MOST = 2.5
K, N = 10, 60


def _admit_at_a_barrier(upstream: FakeUpstream, parties: int) -> None:
    """The upstream answers nobody until `parties` requests are waiting at once (10 s at
    most, else the barrier breaks and the test fails)."""
    barrier = threading.Barrier(parties, timeout=10)

    def script(received: Received) -> Reply:
        barrier.wait()
        return Reply(body=images_response(received))

    upstream.script = script


async def _burst(urls: list[str], count: int) -> list[int]:
    """`count` concurrent requests, alternating gateways and the two vision users."""
    async with httpx.AsyncClient(timeout=30) as client:
        calls = [
            client.post(
                urls[i % len(urls)] + "/v1/images/variations",
                headers=auth(("alice", "bob")[i % 2]),
                files={"image": ("a.png", IMAGES[0], "image/png")},
                data={"size": "256x256"},
            )
            for i in range(count)
        ]
        return [r.status_code for r in await asyncio.gather(*calls)]


def _quota_used(metrics: str) -> dict[tuple[str, str, str], float]:
    """gateway_quota_used by (scope, subject, unit), from a /metrics page."""
    pattern = r'gateway_quota_used\{scope="(\w+)",subject="(\w+)",unit="(\w+)",window="\w+"\} (\S+)'
    return {match[:3]: float(match[3]) for match in re.findall(pattern, metrics)}


def test_two_gateways_on_a_cluster_admit_exactly_k_of_n(
    start_gateway: Callable[..., GatewayProcess],
    upstream: FakeUpstream,
    redis_cluster: RedisClusterGroup,
) -> None:
    """60 concurrent requests over two gateway processes sharing a Cluster, against a team
    pool of 10 images: exactly 10 are admitted, all 10 in flight at once; the scrape, which
    reads every principal's and team's counters (several slots), reports the pool used up."""
    redis_cluster.wipe(f"{KEY_PREFIX}:*")
    config = ledger_config(
        upstream.url,
        quotas={
            "default": [{"unit": "requests", "limit": 1000, "window": "day"}],
            "teams": {"vision": [{"unit": "images", "limit": K, "window": "month"}]},
        },
    )
    env = {"REDIS_URL": redis_cluster.url}
    gateways = [start_gateway(config, env) for _ in range(2)]
    _admit_at_a_barrier(upstream, K)
    statuses = asyncio.run(_burst([g.url for g in gateways], N))
    assert statuses.count(200) == K and statuses.count(429) == N - K, statuses
    assert len(upstream.received) == K
    used = _quota_used(httpx.get(gateways[1].url + "/metrics").text)
    assert used[("team", "vision", "images")] == K
    assert used[("user", "alice", "requests")] + used[("user", "bob", "requests")] == K
    assert used[("user", "carol", "requests")] == used[("user", "grafana", "requests")] == 0
    redis_cluster.wipe(f"{KEY_PREFIX}:*")


Topology = RedisClusterGroup | SentinelGroup


@pytest.fixture(params=["cluster", "sentinel"])
def doomed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Topology]:
    """A topology of the test's own, whose primary the test kills."""
    group: Topology = (
        RedisClusterGroup(tmp_path / "cluster")
        if request.param == "cluster"
        else SentinelGroup(tmp_path / "sentinel")
    )
    try:
        yield group.start()
    finally:
        group.stop()


def test_a_primary_killed_under_load_fails_over_without_a_500(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, doomed: Topology
) -> None:
    """The primary holding the quota counters dies under 16 clients: only 200s and
    fail_closed 503s, none held past the bounded wait (on a Cluster as on Sentinel),
    metered 200s again within 10 s, and charged equals delivered up to what asynchronous
    replication may drop (the last second before the kill)."""
    gateway = start_gateway(ledger_config(upstream.url), {"REDIS_URL": doomed.url})
    marks: dict[str, float] = {}

    def failover() -> None:
        time.sleep(1.0)
        marks["killed"] = time.monotonic()
        doomed.kill_owner(f"{KEY_PREFIX}:quota:{{{QUOTA_TAG}}}")
        time.sleep(RECOVERY_SECONDS + 1.0)

    crowd = Crowd(gateway.url, IMAGES, clients=16)
    tally = asyncio.run(during(crowd, failover))
    statuses = tally.statuses()
    assert set(statuses) <= {200, 503}, statuses
    assert set(tally.codes()) <= {"quota_backend_unavailable"}
    late = [c.seen for c in crowd.timeline if c.sent > marks["killed"] + RECOVERY_SECONDS]
    assert late, "no request was sent after the recovery bound"
    assert all(seen.status == 200 and seen.metered for seen in late)
    held = sorted(c.answered - max(c.sent, marks["killed"]) for c in crowd.timeline)
    assert held[-1] <= HELD_AT_MOST, held[-5:]
    output = gateway.output()
    assert "Traceback" not in output and "unhandled error" not in output
    _assert_nothing_but_the_last_second_lost(doomed, crowd, upstream, marks["killed"])


def _assert_nothing_but_the_last_second_lost(
    doomed: Topology, crowd: Crowd, upstream: FakeUpstream, killed: float
) -> None:
    """The counters equal what the upstream did, but for charges made in the last second
    before the kill that the dead primary had not yet replicated (asynchronous
    replication): never more than that, never less than that margin allows."""
    calls = {call.request_id: call for call in upstream.received}

    def books(seen: list[Seen]) -> Books:
        ids = {item.headers.get("x-upstream-request-id") for item in seen}
        return expected_books(seen, [call for rid, call in calls.items() if rid in ids])

    delivered = books(crowd.tally.seen)
    at_risk = books([c.seen for c in crowd.timeline if killed - 1.0 <= c.sent <= killed])
    charged = quota_counters(doomed)
    assert set(charged) <= set(delivered), charged
    for key, amount in delivered.items():
        assert amount - at_risk.get(key, 0) <= charged.get(key, 0) <= amount, (key, charged)
