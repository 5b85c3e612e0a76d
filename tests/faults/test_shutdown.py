"""SIGTERM under load: in-flight requests finish, new ones are refused, nothing leaks."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest
from support.callers import Crowd, during
from support.fake_upstream import FakeUpstream, Reply, images_response
from support.ledger import assert_balanced, ledger_config
from support.pngs import make_png
from support.servers import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
IMAGES = [make_png(12 + i) for i in range(3)]
# What a caller sees from a server that has stopped listening or closed an idle connection.
REFUSED = {"ConnectError", "RemoteProtocolError"}


def terminate(gateway: GatewayProcess, after: float, marks: dict[str, float]) -> Callable[[], None]:
    """A scenario: SIGTERM after `after` seconds, then wait for the process to exit."""

    def scenario() -> None:
        time.sleep(after)
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGTERM)
        marks["term"] = time.monotonic()
        gateway.proc.wait(timeout=30)
        marks["exit"] = time.monotonic()
        time.sleep(0.3)  # callers meet the closed port

    return scenario


def test_sigterm_under_load_finishes_in_flight_requests_and_refuses_new_ones(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """Every request sent before SIGTERM is answered 200; every later one is refused at the
    socket (never half-answered, never a 5xx); the charges match the 200s."""
    upstream.script = lambda r: Reply(body=images_response(r), delay=0.8)
    gateway = start_gateway(ledger_config(upstream.url), {"REDIS_URL": clean_redis})
    marks: dict[str, float] = {}
    crowd = Crowd(gateway.url, IMAGES, clients=16)
    tally = asyncio.run(during(crowd, terminate(gateway, 1.5, marks)))
    before = [call.seen for call in crowd.timeline if call.sent < marks["term"] - 0.05]
    assert before and all(seen.status == 200 for seen in before)
    assert any(call.sent > marks["term"] for call in crowd.timeline), "nobody came late"
    assert {seen.code for seen in tally.seen if seen.status != 200} <= REFUSED
    assert "Finished server process" in gateway.output()
    assert_balanced(clean_redis, tally.seen, upstream.received)


def test_requests_cancelled_past_the_shutdown_grace_keep_the_charge_of_their_calls(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> None:
    """Requests still waiting on upstream when the grace period ends are cancelled; their
    calls were sent (the upstream may bill them), so they stay charged as asked
    (`upstream.on_timeout: keep_charge`), settled before the process exits."""
    upstream.script = lambda r: Reply(body=images_response(r), delay=6)
    config = ledger_config(upstream.url, limits={"shutdown_grace_seconds": 1})
    gateway = start_gateway(config, {"REDIS_URL": clean_redis})
    marks: dict[str, float] = {}
    crowd = Crowd(gateway.url, IMAGES, clients=8)

    def scenario() -> None:
        deadline = time.monotonic() + 10
        while len(upstream.received) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)  # all 8 are charged and waiting on upstream
        terminate(gateway, 0, marks)()

    tally = asyncio.run(during(crowd, scenario))
    assert len(upstream.received) == 8
    assert marks["exit"] - marks["term"] < 10
    assert tally.statuses()[200] == 0
    assert_balanced(clean_redis, tally.seen, upstream.received)
