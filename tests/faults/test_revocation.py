"""Revocation across replicas when one replica's Redis connections freeze, are cut or are
slow: wherever the replica can reach Redis a revoked runtime key is refused within about a
second, and a replica that cannot confirm its view of the runtime keys refuses them (503)
rather than serve them on a stale view; config keys keep working throughout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import httpx
import pytest
from support.config import auth, base_config
from support.fake_upstream import FakeUpstream
from support.relay import TcpRelay
from support.servers import GatewayProcess, RedisServer

from gateway.admin.state import CONFIRM_WITHIN_SECONDS

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
ADMIN = auth("grafana")
SETTLE_SECONDS = 3.0  # how long a replica is watched after a fault


class Answer(NamedTuple):
    """One call of the watched key: when it was sent (monotonic, shared by every process on
    the machine), its status and error code."""

    sent: float
    status: int
    code: str | None


class Replicas(NamedTuple):
    """`direct` reaches Redis itself; `relayed` through `relay`."""

    direct: GatewayProcess
    relayed: GatewayProcess
    relay: TcpRelay
    redis: RedisServer


@pytest.fixture
def replicas(
    start_gateway: Callable[..., GatewayProcess],
    upstream: FakeUpstream,
    persistent_redis: RedisServer,
) -> Iterator[Replicas]:
    """Two gateways on one persistent Redis, the second through a relay; unmetered calls are
    served while Redis is away (`fail_open`), so a config key's fate shows."""
    config = {**base_config(upstream.url), "store": {"on_error": "fail_open"}}
    with TcpRelay(persistent_redis.port) as relay:
        direct = start_gateway(config, {"REDIS_URL": persistent_redis.url})
        relayed = start_gateway(config, {"REDIS_URL": relay.url})
        yield Replicas(direct, relayed, relay, persistent_redis)


def _call(gateway: GatewayProcess, headers: dict[str, str]) -> Answer:
    sent = time.monotonic()
    try:
        response = httpx.get(gateway.url + "/v1/quota", headers=headers, timeout=10)
    except httpx.TimeoutException:
        return Answer(sent, 0, "timeout")
    code = response.json()["error"]["code"] if response.status_code >= 400 else None
    return Answer(sent, response.status_code, code)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _watch(gateway: GatewayProcess, key: str, seconds: float) -> list[Answer]:
    """Call with `key` one call after another (as one sequential caller) for `seconds`."""
    deadline = time.monotonic() + seconds
    answers = [_call(gateway, _bearer(key))]
    while time.monotonic() < deadline:
        answers.append(_call(gateway, _bearer(key)))
        time.sleep(0.01)
    return answers


def _live_key(replicas: Replicas) -> dict[str, Any]:
    """A runtime key made on the direct replica, once the relayed one serves it."""
    made = httpx.post(
        replicas.direct.url + "/admin/keys", json={"user": "dave", "team": "vision"},
        headers=ADMIN, timeout=10,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    key: dict[str, Any] = made.json()
    deadline = time.monotonic() + 5
    while _call(replicas.relayed, _bearer(key["key"])).status != 200:
        assert time.monotonic() < deadline, "the key never reached the relayed replica"
        time.sleep(0.05)
    return key


def _revoke(gateway: GatewayProcess, key: dict[str, Any]) -> float:
    """Revoke `key` through `gateway`; when the revoke had certainly happened (monotonic)."""
    revoked = httpx.delete(f"{gateway.url}/admin/keys/{key['id']}", headers=ADMIN, timeout=10)
    assert revoked.status_code == 200, revoked.text
    return time.monotonic()


def _report(measured: Callable[[str], None], case: str, answers: list[Answer], at: float) -> None:
    served = _served_after(answers, at)
    refused = [round(a.sent - at, 3) for a in answers if a.status == 401]
    measured(
        f"revocation, {case}: {len(served)} calls served after the revoke (last sent at "
        f"{max(served, default=0.0):.2f} s), refused (401) from {min(refused, default=-1):.2f} s"
    )


def _served_after(answers: list[Answer], moment: float) -> list[float]:
    """How long after `moment` each call that was served (200) had been sent."""
    return [round(a.sent - moment, 3) for a in answers if a.status == 200 and a.sent > moment]


def test_a_revoke_holds_on_a_replica_whose_open_connections_went_silent(
    replicas: Replicas, measured: Callable[[str], None]
) -> None:
    """The relayed replica's open Redis connections freeze (new ones still work); a revoke
    through the other replica is refused there within a second: no call sent later than
    that is served, and the key ends refused as revoked (401), not as unknown state."""
    key = _live_key(replicas)
    replicas.relay.freeze()
    revoked = _revoke(replicas.direct, key)
    answers = _watch(replicas.relayed, key["key"], SETTLE_SECONDS)
    _report(measured, "open connections frozen", answers, revoked)
    assert max(_served_after(answers, revoked), default=0.0) < CONFIRM_WITHIN_SECONDS
    refused = [a.sent - revoked for a in answers if a.status == 401]
    assert refused and min(refused) < 2 * CONFIRM_WITHIN_SECONDS, answers
    assert answers[-1].status == 401


def test_a_replica_cut_off_refuses_runtime_keys_and_learns_the_revoke_once_back(
    replicas: Replicas, measured: Callable[[str], None]
) -> None:
    """Cut off from Redis, the relayed replica stops honouring runtime keys within a second
    (503 runtime_keys_unavailable, never a 200 on the stale view) while config keys keep
    working; a revoke made meanwhile, with Redis restarted, is a 401 there within a second
    of Redis answering it again."""
    key = _live_key(replicas)
    replicas.relay.cut()
    cut = time.monotonic()
    revoked = _revoke(replicas.direct, key)
    during = _watch(replicas.relayed, key["key"], 1.5)
    assert max(_served_after(during, cut), default=0.0) < CONFIRM_WITHIN_SECONDS
    assert {(a.status, a.code) for a in during if a.sent > revoked + CONFIRM_WITHIN_SECONDS} == {
        (503, "runtime_keys_unavailable")
    }
    assert _call(replicas.relayed, auth("alice")).status == 200
    replicas.redis.stop()
    replicas.redis.start()
    replicas.relay.heal()
    back = time.monotonic()
    after = _watch(replicas.relayed, key["key"], SETTLE_SECONDS)
    _report(measured, "cut off, Redis restarted (times from its return)", after, back)
    assert _served_after(after, cut) == []
    refused = [a.sent - back for a in after if a.status == 401]
    assert refused and min(refused) < CONFIRM_WITHIN_SECONDS, after
    assert all(a.status == 401 for a in after if a.sent > back + CONFIRM_WITHIN_SECONDS)


def test_a_revoke_holds_on_a_replica_whose_redis_is_slow(
    replicas: Replicas, measured: Callable[[str], None]
) -> None:
    """Every byte to and from the relayed replica's Redis held 100 ms each way: the key
    keeps working until the revoke, which is refused there within a second of it."""
    key = _live_key(replicas)
    replicas.relay.delay(0.1)
    before = _watch(replicas.relayed, key["key"], 2.0)
    assert {a.status for a in before} == {200}
    revoked = _revoke(replicas.direct, key)
    answers = _watch(replicas.relayed, key["key"], SETTLE_SECONDS)
    _report(measured, "100 ms each way", answers, revoked)
    assert max(_served_after(answers, revoked), default=0.0) < CONFIRM_WITHIN_SECONDS
    assert all(a.status == 401 for a in answers if a.sent > revoked + CONFIRM_WITHIN_SECONDS)
