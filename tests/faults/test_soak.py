"""The fault matrix at random, under load, with chaos: the randomized soak.

16 callers keep sending to a live gateway (quota counters on a persistent Redis, the
cache on a Redis of its own, fail_closed); each request asks, by its image, for one
upstream fault of the matrix. Meanwhile a director stops and restarts the quota Redis
and the cache Redis, and raw callers hang up mid-upload and mid-wait. Afterwards every
answer must be its fault's (or the 503 of an outage), nothing may be a 5xx of the
gateway's own or a dropped connection, the gateway must be alive and clean, and the
quota counters must equal what callers received.

`make test` runs it for a few seconds; `make soak` for GATEWAY_SOAK_SECONDS (default
300) with a new seed each time (GATEWAY_SOAK_SEED to replay one).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable

import pytest
from support.callers import Crowd, during, multipart, open_raw, raw_head
from support.fake_upstream import FakeUpstream
from support.ledger import Seen, assert_balanced, ledger_config
from support.servers import GatewayProcess, RedisServer
from support.soak import SOAK, seconds
from support.upstream_faults import FAULTS, UPSTREAM_TIMEOUT, Fault, FaultyUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
PLAYED = tuple(fault for fault in FAULTS if not fault.refused)  # refused needs no server
OUTAGE = (503, "quota_backend_unavailable")
QUIET_SECONDS = 3.0  # no chaos at the end: held refunds are made, service is normal


class Director:
    """Plays chaos at random until `deadline`: Redis restarts and callers that hang up."""

    def __init__(
        self,
        gateway: GatewayProcess,
        state: RedisServer,
        cache: RedisServer,
        faulty: FaultyUpstream,
        rng: random.Random,
    ) -> None:
        self.gateway, self.state, self.cache, self.faulty, self.rng = (
            gateway,
            state,
            cache,
            faulty,
            rng,
        )
        self.played: Counter[str] = Counter()
        self.gone: list[Seen] = []  # the callers that hung up: they received nothing

    def run(self, deadline: float) -> None:
        actions = [self._bounce_state, self._bounce_cache, self._hang_up_waiting]
        actions.append(self._hang_up_uploading)
        while time.monotonic() < deadline - QUIET_SECONDS:
            time.sleep(self.rng.uniform(0.5, 2.0))
            action = self.rng.choice(actions)
            self.played[action.__name__.strip("_")] += 1
            action()
        time.sleep(max(0.0, deadline - time.monotonic()))

    def _bounce(self, server: RedisServer) -> None:
        server.stop()
        time.sleep(self.rng.uniform(0.2, 1.2))
        server.start()

    def _bounce_state(self) -> None:
        self._bounce(self.state)

    def _bounce_cache(self) -> None:
        self._bounce(self.cache)

    def _sockets(self, fault: str, count: int, part: float) -> list[socket.socket]:
        """`count` callers asking for `fault` with images of their own (no cache hit could
        answer them before they hang up), having sent `part` of their upload."""
        self.gone += [Seen("alice", "512x512", 0) for _ in range(count)]
        sockets = []
        for _ in range(count):
            body, content_type = multipart(self.faulty.new_image_for(fault), size="512x512")
            head = raw_head(self.gateway.port, length=len(body), content_type=content_type)
            sockets.append(open_raw(self.gateway.port, head + body[: int(len(body) * part)]))
        return sockets

    def _hang_up_waiting(self) -> None:
        sockets = self._sockets("slow-near-timeout", 4, 1.0)
        time.sleep(0.3)  # charged, and waiting on the slow upstream
        for sock in sockets:
            sock.close()

    def _hang_up_uploading(self) -> None:
        for sock in self._sockets("ok", 4, 0.5):
            sock.close()


def expected(fault: Fault, n: int, seen: Seen) -> bool:
    """Whether `seen` is an answer the spec allows for `fault` (or a quota outage's)."""
    if (seen.status, seen.code) == OUTAGE:
        return True
    if fault.status == 200:
        return seen.status == 200 and seen.images == fault.expects_images(n)
    return (seen.status, seen.code) == (fault.status, fault.code)


def test_the_fault_matrix_at_random_under_load_with_chaos(
    start_gateway: Callable[..., GatewayProcess],
    upstream: FakeUpstream,
    persistent_redis: RedisServer,
    own_redis: RedisServer,
    measured: Callable[[str], None],
) -> None:
    """Random faults, Redis restarts and hang-ups under 16 callers: every answer is its
    fault's, the gateway stays up and clean, and charged = delivered."""
    seed = int(os.environ.get("GATEWAY_SOAK_SEED", random.randrange(1 << 30) if SOAK else 7))
    rng = random.Random(seed)
    faulty = FaultyUpstream(upstream, PLAYED)
    config = ledger_config(
        upstream.url,
        upstream={"base_url": upstream.url, "timeout_seconds": UPSTREAM_TIMEOUT},
        cache={"enabled": True},
    )
    env = {"REDIS_URL": persistent_redis.url, "CACHE_REDIS_URL": own_redis.url}
    gateway = start_gateway(config, env)
    images = [faulty.image_for(fault.name) for fault in PLAYED]
    crowd = Crowd(gateway.url, images, clients=16, seed=seed)
    director = Director(gateway, persistent_redis, own_redis, faulty, rng)
    duration = seconds(12.0)
    deadline = time.monotonic() + duration
    tally = asyncio.run(during(crowd, lambda: director.run(deadline)))

    wrong = [
        (PLAYED[call.image].name, call.n, call.seen.status, call.seen.code, call.seen.images)
        for call in crowd.timeline
        if not expected(PLAYED[call.image], call.n, call.seen)
    ]
    assert not wrong, wrong[:10]
    quiet = [call.seen for call in crowd.timeline if call.sent > deadline - QUIET_SECONDS + 2]
    assert quiet and all((s.status, s.code) != OUTAGE for s in quiet), "no recovery"
    output = gateway.output()
    assert "unhandled error" not in output and "Traceback" not in output
    time.sleep(0.5)  # refunds held through an outage land after the next charge
    assert_balanced(persistent_redis.url, [*tally.seen, *director.gone], upstream.received)
    faults = Counter(PLAYED[call.image].name for call in crowd.timeline)
    measured(
        f"soak (seed {seed}, {duration:.0f} s): {len(crowd.timeline)} requests over "
        f"{len(faults)} faults, chaos {dict(director.played)}, "
        f"statuses {dict(sorted(tally.statuses().items()))}, books balanced"
    )
